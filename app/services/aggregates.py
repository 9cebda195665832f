"""Aggregates a provider belongs to. An aggregate is just a UUID, created on first use.

From 1.19 the client sends the provider's generation and a change bumps it; before 1.19
neither happens (as in Placement).
"""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.authz.access import Access
from app.errors import CONCURRENT_UPDATE, ApiError
from app.models import Aggregate, ProviderAggregate, ResourceProvider
from app.services import providers
from app.statements import bump_generation, insert_ignoring_duplicates


async def _current(session: AsyncSession, provider_id: int) -> dict[str, int]:
    rows = await session.execute(
        select(Aggregate.uuid, Aggregate.id)
        .join(ProviderAggregate, ProviderAggregate.aggregate_id == Aggregate.id)
        .where(ProviderAggregate.resource_provider_id == provider_id)
        .order_by(Aggregate.uuid)
    )
    return {uuid: id_ for uuid, id_ in rows.all()}


async def read(session: AsyncSession, access: Access, uuid: str) -> tuple[int, list[str]]:
    provider = await providers.get(session, access, uuid)
    return provider.generation, list(await _current(session, provider.id))


async def _ensure(session: AsyncSession, uuids: set[str]) -> dict[str, int]:
    """Ids of these aggregates, creating the ones never seen (safe against racing writers)."""
    if not uuids:
        return {}
    await insert_ignoring_duplicates(session, Aggregate, [{"uuid": u} for u in sorted(uuids)])
    rows = await session.execute(
        select(Aggregate.uuid, Aggregate.id).where(Aggregate.uuid.in_(uuids))
    )
    return {uuid: id_ for uuid, id_ in rows.all()}


async def replace(
    session: AsyncSession,
    access: Access,
    uuid: str,
    aggregates: list[str],
    generation: int | None,
) -> tuple[int, list[str]]:
    """Set the provider's aggregates; `generation` is the client's (1.19+) or None (before)."""
    provider = await providers.get_for_write(session, access, uuid)
    if generation is not None and generation != provider.generation:
        raise ApiError(409, CONCURRENT_UPDATE, log_detail=f"stale generation {generation}")
    wanted = set(aggregates)
    current = await _current(session, provider.id)
    gone = [id_ for agg, id_ in current.items() if agg not in wanted]
    if gone:
        await session.execute(
            delete(ProviderAggregate).where(
                ProviderAggregate.resource_provider_id == provider.id,
                ProviderAggregate.aggregate_id.in_(gone),
            )
        )
    ids = await _ensure(session, wanted - current.keys())
    await insert_ignoring_duplicates(
        session,
        ProviderAggregate,
        [{"resource_provider_id": provider.id, "aggregate_id": id_} for id_ in ids.values()],
    )
    new_generation = provider.generation
    if generation is not None:
        new_generation = await bump_generation(
            session, ResourceProvider, provider.id, generation, from_client=True
        )
    return new_generation, list(aggregates)
