"""Traits on a provider: read, replace the whole set, remove them all.

As in Placement, the generation moves only when the set actually changes.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.authz.access import Access
from app.errors import CONCURRENT_UPDATE, ApiError, bad_request
from app.models import ProviderTrait, ResourceProvider, Trait
from app.services import providers
from app.statements import bump_generation
from app.timeutil import latest


async def _current(session: AsyncSession, provider_id: int) -> dict[str, tuple[int, datetime]]:
    rows = await session.execute(
        select(Trait.name, Trait.id, Trait.updated_at, Trait.created_at)
        .join(ProviderTrait, ProviderTrait.trait_id == Trait.id)
        .where(ProviderTrait.resource_provider_id == provider_id)
        .order_by(Trait.name)
    )
    return {name: (id_, latest(updated or created)) for name, id_, updated, created in rows.all()}


async def read(session: AsyncSession, access: Access, uuid: str) -> tuple[int, list[str], datetime]:
    """The provider's generation, trait names (sorted), and when those traits last changed."""
    provider = await providers.get(session, access, uuid)
    current = await _current(session, provider.id)
    return provider.generation, list(current), latest(among=(m for _, m in current.values()))


async def _set(
    session: AsyncSession, provider: providers.Provider, wanted: dict[str, int], seen: int,
    *, from_client: bool,
) -> int:  # fmt: skip
    current = await _current(session, provider.id)
    have = {name: id_ for name, (id_, _) in current.items()}
    gone = [id_ for name, id_ in have.items() if name not in wanted]
    new = [id_ for name, id_ in wanted.items() if name not in have]
    if not gone and not new:
        return provider.generation
    if gone:
        await session.execute(
            delete(ProviderTrait).where(
                ProviderTrait.resource_provider_id == provider.id,
                ProviderTrait.trait_id.in_(gone),
            )
        )
    if new:
        await session.execute(
            insert(ProviderTrait),
            [{"resource_provider_id": provider.id, "trait_id": id_} for id_ in new],
        )
    return await bump_generation(
        session, ResourceProvider, provider.id, seen, from_client=from_client
    )


async def replace(
    session: AsyncSession, access: Access, uuid: str, names: list[str], generation: int
) -> tuple[int, list[str], datetime]:
    provider = await providers.get_for_write(session, access, uuid)
    if generation != provider.generation:
        raise ApiError(409, CONCURRENT_UPDATE, log_detail=f"stale generation {generation}")
    wanted = set(names)
    rows = await session.execute(
        select(Trait.name, Trait.id, Trait.updated_at, Trait.created_at).where(
            Trait.name.in_(wanted)
        )
    )
    found = {name: (id_, latest(updated or created)) for name, id_, updated, created in rows.all()}
    missing = wanted - found.keys()
    if missing:
        raise bad_request(f"no such traits {sorted(missing)[:5]}")
    new_generation = await _set(
        session, provider, {n: i for n, (i, _) in found.items()}, generation, from_client=True
    )
    modified = latest(among=(m for _, m in found.values()))
    return new_generation, sorted(found), modified


async def delete_all(session: AsyncSession, access: Access, uuid: str) -> None:
    provider = await providers.get_for_write(session, access, uuid)
    await _set(session, provider, {}, provider.generation, from_client=False)
