"""Reads for the candidate search: set-based queries by root provider, a batch of trees at a time.

Every query carries the caller's visibility filter, so a member's search never sees a provider
of another project (sharing providers included).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, exists, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

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


async def sharing_roots(
    session: AsyncSession, shares_trait: int, visible: ColumnElement[bool]
) -> list[int]:
    rows = await session.execute(
        select(RP.root_provider_id)
        .join(ProviderTrait, ProviderTrait.resource_provider_id == RP.id)
        .where(ProviderTrait.trait_id == shares_trait, visible)
        .distinct()
    )
    return [r for (r,) in rows.all() if r is not None]


@dataclass(frozen=True)
class RootFilter:
    visible: ColumnElement[bool]
    required: Sequence[int] = ()
    forbidden: Sequence[int] = ()
    only: Sequence[int] | None = None  # the anchors, when in_tree pins them


async def next_roots(session: AsyncSession, rf: RootFilter, after: int, count: int) -> list[int]:
    """The next `count` root providers (ascending id) that may anchor a candidate."""
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
    rows = await session.execute(stmt.order_by(RP.id).limit(count))
    return [r for (r,) in rows.all()]


@dataclass
class Wanted:
    """What the search needs to know of each provider."""

    class_ids: Sequence[int]
    trait_ids: Sequence[int]
    aggregates: bool


async def load_trees(
    session: AsyncSession, roots: Sequence[int], wanted: Wanted, visible: ColumnElement[bool]
) -> dict[int, Provider]:
    """The visible providers of some trees, with the inventories, traits and aggregates asked."""
    if not roots:
        return {}
    in_trees = RP.root_provider_id.in_(list(roots))
    rows = await session.execute(
        select(RP.id, RP.uuid, RP.parent_provider_id, RP.root_provider_id).where(in_trees, visible)
    )
    providers = {
        r.id: Provider(r.id, r.uuid, r.parent_provider_id, r.root_provider_id or r.id)
        for r in rows.all()
    }
    if not providers:
        return providers
    if wanted.class_ids:
        inv = await session.execute(
            select(
                Inventory.resource_provider_id,
                Inventory.resource_class_id,
                Inventory.total,
                Inventory.reserved,
                Inventory.min_unit,
                Inventory.max_unit,
                Inventory.step_size,
                Inventory.allocation_ratio,
                used_amount(Inventory.resource_provider_id, Inventory.resource_class_id).label(
                    "used"
                ),
            )
            .join(RP, RP.id == Inventory.resource_provider_id)
            .where(in_trees, Inventory.resource_class_id.in_(list(wanted.class_ids)))
        )
        for r in inv.all():
            p = providers.get(r.resource_provider_id)
            if p is not None:
                p.inventory[r.resource_class_id] = (_limits(r), int(r.used))
    if wanted.trait_ids:
        traits: dict[int, set[int]] = defaultdict(set)
        trait_rows = await session.execute(
            select(ProviderTrait.resource_provider_id, ProviderTrait.trait_id)
            .join(RP, RP.id == ProviderTrait.resource_provider_id)
            .where(in_trees, ProviderTrait.trait_id.in_(list(wanted.trait_ids)))
        )
        for pid, tid in trait_rows.all():
            traits[pid].add(tid)
        for pid, found in traits.items():
            if pid in providers:
                providers[pid].traits = frozenset(found)
    if wanted.aggregates:
        aggs: dict[int, set[int]] = defaultdict(set)
        agg_rows = await session.execute(
            select(ProviderAggregate.resource_provider_id, ProviderAggregate.aggregate_id)
            .join(RP, RP.id == ProviderAggregate.resource_provider_id)
            .where(in_trees)
        )
        for pid, aid in agg_rows.all():
            aggs[pid].add(aid)
        for pid, found in aggs.items():
            if pid in providers:
                providers[pid].aggregates = frozenset(found)
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
        sorted(pid for pid, p in providers.items() if shares_trait in p.traits)
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


async def summaries(
    session: AsyncSession,
    visible: ColumnElement[bool],
    *,
    roots: Sequence[int] = (),
    provider_ids: Sequence[int] = (),
) -> dict[int, Summary]:
    """Summaries of every visible provider in `roots`' trees, or of `provider_ids` only."""
    if roots:
        scope = RP.root_provider_id.in_(list(roots))
    elif provider_ids:
        scope = RP.id.in_(list(provider_ids))
    else:
        return {}
    parent = aliased(RP)
    root = aliased(RP)
    rows = await session.execute(
        select(RP.id, RP.uuid, parent.uuid.label("parent_uuid"), root.uuid.label("root_uuid"))
        .outerjoin(parent, parent.id == RP.parent_provider_id)
        .outerjoin(root, root.id == RP.root_provider_id)
        .where(scope, visible)
    )
    out = {r.id: Summary(r.uuid, r.parent_uuid, r.root_uuid or r.uuid) for r in rows.all()}
    if not out:
        return out
    inv = await session.execute(
        select(
            Inventory.resource_provider_id,
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
        .where(scope)
    )
    for r in inv.all():
        s = out.get(r.resource_provider_id)
        if s is not None:
            s.resources[r.name] = (_limits(r).capacity, int(r.used))
    traits = await session.execute(
        select(ProviderTrait.resource_provider_id, Trait.name)
        .join(RP, RP.id == ProviderTrait.resource_provider_id)
        .join(Trait, Trait.id == ProviderTrait.trait_id)
        .where(scope)
        .order_by(Trait.name)
    )
    for pid, name in traits.all():
        s = out.get(pid)
        if s is not None:
            s.traits.append(name)
    return out
