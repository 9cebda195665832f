"""Reads for the candidate search: set-based queries by root provider, a batch of trees at a time.

Every query carries the caller's visibility filter, so a member's search never sees a provider
of another project (sharing providers included).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, Select, exists, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import (
    Aggregate,
    Inventory,
    ProviderAggregate,
    ProviderTrait,
    ResourceClass,
    ResourceProvider,
    Trait,
)
from app.services.candidates.search import Provider, World
from app.services.capacity import InventoryLimits, used_amount

RP = ResourceProvider


async def ids_of_traits(session: AsyncSession, names: Iterable[str]) -> dict[str, int]:
    names = set(names)
    if not names:
        return {}
    rows = await session.execute(select(Trait.name, Trait.id).where(Trait.name.in_(names)))
    return {name: id_ for name, id_ in rows.all()}


async def ids_of_classes(session: AsyncSession, names: Iterable[str]) -> dict[str, int]:
    names = set(names)
    if not names:
        return {}
    rows = await session.execute(
        select(ResourceClass.name, ResourceClass.id).where(ResourceClass.name.in_(names))
    )
    return {name: id_ for name, id_ in rows.all()}


async def ids_of_aggregates(session: AsyncSession, uuids: Iterable[str]) -> dict[str, int]:
    uuids = set(uuids)
    if not uuids:
        return {}
    rows = await session.execute(
        select(Aggregate.uuid, Aggregate.id).where(Aggregate.uuid.in_(uuids))
    )
    return {uuid: id_ for uuid, id_ in rows.all()}


async def root_of(session: AsyncSession, uuid: str, visible: ColumnElement[bool]) -> int | None:
    root: int | None = await session.scalar(
        select(RP.root_provider_id).where(RP.uuid == uuid, visible)
    )
    return root


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
    roots: Select[Any],
    visible: ColumnElement[bool],
    names: Names,
) -> dict[int, Provider]:
    """The visible providers of the trees whose roots `roots` selects, with every inventory
    (and its usage), trait and aggregate: enough to search and to summarise them."""
    in_trees = RP.root_provider_id.in_(roots.scalar_subquery())
    rows = await session.execute(
        select(RP.id, RP.uuid, RP.parent_provider_id, RP.root_provider_id).where(in_trees, visible)
    )
    providers = {
        r.id: Provider(r.id, r.uuid, r.parent_provider_id, r.root_provider_id or r.id)
        for r in rows.all()
    }
    if not providers:
        return providers
    inv = await session.execute(
        select(
            Inventory.resource_provider_id,
            Inventory.resource_class_id,
            ResourceClass.name,
            Inventory.total,
            Inventory.reserved,
            Inventory.min_unit,
            Inventory.max_unit,
            Inventory.step_size,
            Inventory.allocation_ratio,
            used_amount(Inventory.resource_provider_id, Inventory.resource_class_id).label("used"),
        )
        .join(RP, RP.id == Inventory.resource_provider_id)
        .join(ResourceClass, ResourceClass.id == Inventory.resource_class_id)
        .where(in_trees)
    )
    for r in inv.all():
        p = providers.get(r.resource_provider_id)
        if p is not None:
            p.inventory[r.resource_class_id] = (_limits(r), int(r.used))
            names.classes[r.resource_class_id] = r.name
    traits: dict[int, set[int]] = defaultdict(set)
    trait_rows = await session.execute(
        select(ProviderTrait.resource_provider_id, ProviderTrait.trait_id, Trait.name)
        .join(RP, RP.id == ProviderTrait.resource_provider_id)
        .join(Trait, Trait.id == ProviderTrait.trait_id)
        .where(in_trees)
    )
    for pid, tid, name in trait_rows.all():
        traits[pid].add(tid)
        names.traits[tid] = name
    aggs: dict[int, set[int]] = defaultdict(set)
    agg_rows = await session.execute(
        select(ProviderAggregate.resource_provider_id, ProviderAggregate.aggregate_id)
        .join(RP, RP.id == ProviderAggregate.resource_provider_id)
        .where(in_trees)
    )
    for pid, aid in agg_rows.all():
        aggs[pid].add(aid)
    for pid, p in providers.items():
        p.traits = frozenset(traits.get(pid, ()))
        p.aggregates = frozenset(aggs.get(pid, ()))
    return providers


def _limits(r: Any) -> InventoryLimits:
    return InventoryLimits(
        total=r.total,
        reserved=r.reserved,
        min_unit=r.min_unit,
        max_unit=r.max_unit,
        step_size=r.step_size,
        allocation_ratio=r.allocation_ratio,
    )


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
