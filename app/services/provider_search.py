"""GET /resource_providers: the visible providers matching every filter given (name, uuid,
tree, traits, aggregates, and room for some resources now)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import exists, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.authz.access import Access
from app.errors import bad_request
from app.models import (
    Aggregate,
    ProviderAggregate,
    ProviderTrait,
    ResourceClass,
    ResourceProvider,
    Trait,
)
from app.services.capacity import limits_and_usage
from app.services.providers import Provider, list_matching, readable
from app.services.request_groups import AggregateQuery, TraitQuery


@dataclass(frozen=True)
class Filters:
    """What GET /resource_providers narrows the list by (all of them at once)."""

    name: str | None = None
    uuid: str | None = None
    in_tree: str | None = None
    aggregates: AggregateQuery = field(default_factory=AggregateQuery)
    traits: TraitQuery = field(default_factory=TraitQuery)
    resources: dict[str, int] = field(default_factory=dict)


def _has_trait_in(trait_ids: set[int]) -> Any:
    return exists().where(
        ProviderTrait.resource_provider_id == ResourceProvider.id,
        ProviderTrait.trait_id.in_(trait_ids),
    )


def _in_aggregate(uuids: frozenset[str]) -> Any:
    return exists().where(
        ProviderAggregate.resource_provider_id == ResourceProvider.id,
        ProviderAggregate.aggregate_id == Aggregate.id,
        Aggregate.uuid.in_(uuids),
    )


async def _trait_conditions(session: AsyncSession, traits: TraitQuery) -> list[Any]:
    """Each required set: at least one of it; forbidden: none of them. Unknown names: 400."""
    names = traits.names()
    rows = await session.execute(select(Trait.name, Trait.id).where(Trait.name.in_(names)))
    ids = {name: id_ for name, id_ in rows.all()}
    missing = names - ids.keys()
    if missing:
        raise bad_request(f"no such traits {sorted(missing)[:5]}")
    conditions = [_has_trait_in({ids[n] for n in any_of}) for any_of in traits.required]
    if traits.forbidden:
        conditions.append(~_has_trait_in({ids[n] for n in traits.forbidden}))
    return conditions


def _aggregate_conditions(aggregates: AggregateQuery) -> list[Any]:
    conditions = [_in_aggregate(any_of) for any_of in aggregates.required]
    if aggregates.forbidden:
        conditions.append(~_in_aggregate(aggregates.forbidden))
    return conditions


async def _with_room(
    session: AsyncSession, found: list[Provider], wanted: dict[str, int]
) -> list[Provider]:
    """The providers that can take each `wanted` amount now (capacity rules in one place)."""
    rows = await session.execute(
        select(ResourceClass.name, ResourceClass.id).where(ResourceClass.name.in_(wanted))
    )
    class_ids = {name: id_ for name, id_ in rows.all()}
    missing = wanted.keys() - class_ids.keys()
    if missing:
        raise bad_request(f"no such resource classes {sorted(missing)[:5]}")
    # Limits and usage of the wanted classes on the candidates, in one read.
    capacity = await limits_and_usage(session, (p.id for p in found), class_ids.values())

    def fits(provider: Provider) -> bool:
        for name, amount in wanted.items():
            key = (provider.id, class_ids[name])
            limits, used = capacity.get(key, (None, 0))
            if limits is None or not limits.fits(used, amount):
                return False
        return True

    return [p for p in found if fits(p)]


async def find(session: AsyncSession, access: Access, filters: Filters) -> list[Provider]:
    conditions: list[Any] = []
    if filters.name is not None:
        conditions.append(ResourceProvider.name == filters.name)
    if filters.uuid is not None:
        conditions.append(ResourceProvider.uuid == filters.uuid)
    if filters.in_tree is not None:
        # Only trees the caller can see: an invisible provider names no tree (empty list).
        root = (
            select(ResourceProvider.root_provider_id)
            .where(ResourceProvider.uuid == filters.in_tree, readable(access))
            .scalar_subquery()
        )
        conditions.append(ResourceProvider.root_provider_id == root)
    if filters.traits:
        conditions += await _trait_conditions(session, filters.traits)
    conditions += _aggregate_conditions(filters.aggregates)
    found = await list_matching(session, access, *conditions)
    if filters.resources:
        return await _with_room(session, found, filters.resources)
    return found
