"""Reads for the candidate search: set-based queries by root provider, a batch of trees at a time.

Every query carries the caller's visibility filter, so a member's search never sees a provider
of another project (sharing providers included).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    exists,
    false,
    func,
    literal,
    null,
    or_,
    select,
    union_all,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import QueryableAttribute

from app.models import (
    Aggregate,
    Inventory,
    ProviderAggregate,
    ProviderTrait,
    ResourceClass,
    ResourceProvider,
    Trait,
)
from app.services.candidates.model import Provider, World
from app.services.capacity import LIMIT_FIELDS, InventoryLimits

RP = ResourceProvider
# Ids read as one range when they are at most this far apart (roots, then any providers),
# unless that makes more than MAX_SPANS ranges.
ROOT_GAP, PROVIDER_GAP = 8, 16
MAX_SPANS = 32


@dataclass
class Ids:
    """Ids of the resource classes, traits and aggregates a request names (unknown: absent)."""

    classes: dict[str, int] = field(default_factory=dict)
    traits: dict[str, int] = field(default_factory=dict)
    aggregates: dict[str, int] = field(default_factory=dict)  # by uuid


async def ids_by_name(
    session: AsyncSession, classes: Iterable[str], traits: Iterable[str], aggregates: Iterable[str]
) -> Ids:
    """Ids of the named resource classes and traits and of the aggregates, in one query."""
    classes, traits, aggregates = set(classes), set(traits), set(aggregates)
    parts = []
    if classes:
        parts.append(
            select(literal("c"), ResourceClass.name, ResourceClass.id).where(
                ResourceClass.name.in_(classes)
            )
        )
    if traits:
        parts.append(select(literal("t"), Trait.name, Trait.id).where(Trait.name.in_(traits)))
    if aggregates:
        parts.append(
            select(literal("a"), Aggregate.uuid, Aggregate.id).where(Aggregate.uuid.in_(aggregates))
        )
    found = Ids()
    if not parts:
        return found
    rows = await session.execute(union_all(*parts))
    by_kind = {"c": found.classes, "t": found.traits, "a": found.aggregates}
    for kind, name, id_ in rows.all():
        by_kind[kind][name] = id_
    return found


async def root_of(session: AsyncSession, uuid: str, visible: ColumnElement[bool]) -> int | None:
    root: int | None = await session.scalar(
        select(RP.root_provider_id).where(RP.uuid == uuid, visible)
    )
    return root


def _among(
    column: QueryableAttribute[int | None] | QueryableAttribute[int], ids: Sequence[int], gap: int
) -> ColumnElement[bool]:
    """SQL: `column` is one of the ascending `ids`, as ranges where they run close together.

    Providers of a tree are mostly created together, so the ids a batch needs are dense: one
    index range scan per run of ids, which the planner estimates well, where a long IN list
    makes it misjudge and scan a whole table. Rows in a range but not asked for are read and
    dropped by the caller. Ids too scattered for a few ranges stay a list."""
    if not ids:
        return false()
    spans: list[tuple[int, int]] = []
    start = previous = ids[0]
    for i in ids[1:]:
        if i - previous > gap:
            spans.append((start, previous))
            start = i
        previous = i
    spans.append((start, previous))
    if len(spans) > MAX_SPANS:
        return column.in_(list(ids))
    return or_(*(column.between(lo, hi) if lo < hi else column == lo for lo, hi in spans))


def sharing_roots(shares_trait: int, visible: ColumnElement[bool]) -> Select[Any]:
    """SQL: the roots of the trees that hold a visible sharing provider."""
    return (
        select(RP.root_provider_id)
        .join(ProviderTrait, ProviderTrait.resource_provider_id == RP.id)
        .where(ProviderTrait.trait_id == shares_trait, visible)
        .distinct()
    )


@dataclass(frozen=True)
class RootFilter:
    visible: ColumnElement[bool]
    required: Sequence[int] = ()
    forbidden: Sequence[int] = ()
    only: Sequence[int] | None = None  # the anchors, when in_tree pins them


def next_roots(rf: RootFilter, after: int, count: int) -> Select[Any]:
    """SQL: the next `count` root providers (ascending id) that may anchor a candidate."""
    stmt = select(RP.id).where(RP.parent_provider_id.is_(None), RP.id > after, rf.visible)
    if rf.only is not None:
        stmt = stmt.where(RP.id.in_(rf.only))
    for trait_id in rf.required:
        stmt = stmt.where(
            exists().where(
                ProviderTrait.resource_provider_id == RP.id, ProviderTrait.trait_id == trait_id
            )
        )
    if rf.forbidden:
        stmt = stmt.where(
            ~exists().where(
                ProviderTrait.resource_provider_id == RP.id,
                ProviderTrait.trait_id.in_(rf.forbidden),
            )
        )
    return stmt.order_by(RP.id).limit(count)


@dataclass
class Names:
    """Names of the resource classes and traits met while loading, by id."""

    classes: dict[int, str] = field(default_factory=dict)
    traits: dict[int, str] = field(default_factory=dict)


async def load_trees(
    session: AsyncSession,
    roots: Sequence[int],
    visible: ColumnElement[bool],
    names: Names,
    *,
    also: Sequence[int] = (),
) -> dict[int, Provider]:
    """The visible providers of the trees of `roots` (ascending) and `also`, with every
    inventory (and its usage), trait and aggregate: enough to search and to summarise them.
    Two queries."""
    if not roots and not also:
        return {}
    in_trees = _among(RP.root_provider_id, sorted({*roots, *also}), ROOT_GAP)
    # Core execution: plain rows, without the ORM's per-row loading machinery.
    connection = await session.connection()
    rows = await connection.execute(
        select(
            RP.id,
            RP.uuid,
            RP.parent_provider_id,
            RP.root_provider_id,
            Inventory.resource_class_id,
            ResourceClass.name,
            *LIMIT_FIELDS,
            # Each inventory's usage is kept on its row: no allocation is read here.
            func.coalesce(Inventory.used, 0),
        )
        .outerjoin(Inventory, Inventory.resource_provider_id == RP.id)
        .outerjoin(ResourceClass, ResourceClass.id == Inventory.resource_class_id)
        .where(in_trees, visible)
    )
    providers: dict[int, Provider] = {}
    # Many providers share one inventory shape: build each InventoryLimits once.
    shapes: dict[tuple[Any, ...], InventoryLimits] = {}
    for pid, uuid, parent, root, rc, rc_name, *shape, used in rows.all():
        p = providers.get(pid)
        if p is None:
            p = providers[pid] = Provider(pid, uuid, parent, root or pid)
        if rc is not None:
            key = tuple(shape)
            limits = shapes.get(key)
            if limits is None:
                limits = shapes[key] = InventoryLimits(*shape)
            p.inventory[rc] = (limits, int(used))
            names.classes[rc] = rc_name
    if not providers:
        return providers
    loaded = sorted(providers)
    links: Any = await connection.execute(
        union_all(
            select(
                literal("t"), ProviderTrait.resource_provider_id, ProviderTrait.trait_id, Trait.name
            )
            .join(Trait, Trait.id == ProviderTrait.trait_id)
            .where(_among(ProviderTrait.resource_provider_id, loaded, PROVIDER_GAP)),
            select(
                literal("a"),
                ProviderAggregate.resource_provider_id,
                ProviderAggregate.aggregate_id,
                null(),
            ).where(_among(ProviderAggregate.resource_provider_id, loaded, PROVIDER_GAP)),
        )
    )
    traits: dict[int, set[int]] = defaultdict(set)
    aggs: dict[int, set[int]] = defaultdict(set)
    for kind, pid, id_, name in links.all():
        if pid not in providers:
            continue  # in a range read, but not asked for
        if kind == "t":
            traits[pid].add(id_)
            names.traits[id_] = name
        else:
            aggs[pid].add(id_)
    for pid, p in providers.items():
        p.traits = frozenset(traits.get(pid, ()))
        p.aggregates = frozenset(aggs.get(pid, ()))
    return providers


def world_of(
    trees: dict[int, Provider], sharing: dict[int, Provider], shares_trait: int | None
) -> World:
    providers = dict(sharing)
    providers.update(trees)
    members: dict[int, list[int]] = defaultdict(list)
    for p in trees.values():
        members[p.root_id].append(p.id)
    sharing_ids = (
        sorted(pid for pid, p in sharing.items() if shares_trait in p.traits)
        if shares_trait is not None
        else []
    )
    return World(providers=providers, members=dict(members), sharing=sharing_ids)


# ---------------------------------------------------------------------------
# Provider summaries
# ---------------------------------------------------------------------------


@dataclass
class Summary:
    uuid: str
    parent_uuid: str | None
    root_uuid: str
    resources: dict[str, tuple[int, int]] = field(default_factory=dict)  # class -> (capacity, used)
    traits: list[str] = field(default_factory=list)


def summarise(
    providers: dict[int, Provider], ids: Iterable[int], names: Names
) -> dict[int, Summary]:
    """Summaries (capacity, usage, traits, tree) of some loaded providers."""
    out: dict[int, Summary] = {}
    for pid in ids:
        p = providers[pid]
        parent = providers.get(p.parent_id) if p.parent_id is not None else None
        root = providers.get(p.root_id)
        out[pid] = Summary(
            uuid=p.uuid,
            parent_uuid=parent.uuid if parent else None,
            root_uuid=root.uuid if root else p.uuid,
            resources={
                names.classes[rc]: (limits.capacity, used)
                for rc, (limits, used) in p.inventory.items()
            },
            traits=sorted(names.traits[t] for t in p.traits),
        )
    return out
