"""The reshaper: replace some providers' inventories and some consumers' allocations at once,
typically to move inventory (and what is allocated from it) from a root to a new child.

One transaction, in this order:
1. the providers whose inventory changes must exist (400 otherwise);
2. the allocations are checked and their providers locked together with those providers
   (ascending id order), and the consumers' old allocations are released;
3. each provider's inventory becomes the one asked for, through the inventories service
   (its own rules: client generation, bounds, a class still in use cannot go);
4. the new allocations are checked against the new inventories and written.

Provider generations move as Placement moves them (its reshape writes a provider's
inventory twice when the new inventory is not empty), so clients that track generations
across a reshape see the numbers they expect.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.authz import actions
from app.authz.access import Access
from app.errors import PROVIDER_NOT_FOUND, bad_request
from app.microversion import Microversion
from app.models import ResourceProvider
from app.schemas.inventories import InventoryFields
from app.services import allocations, inventories
from app.services.allocation_consumers import ConsumerWrite
from app.statements import bump_generation


@dataclass(frozen=True)
class InventoryChange:
    provider_uuid: str
    generation: int  # the provider generation the client saw
    inventories: Mapping[str, InventoryFields]


async def reshape(
    session: AsyncSession,
    access: Access,
    version: Microversion,
    changes: Sequence[InventoryChange],
    writes: Sequence[ConsumerWrite],
) -> None:
    provider_ids = await _existing_providers(session, access, changes)
    prepared = await allocations.prepare(
        session, access, writes, also_lock=provider_ids.values(), tolerate_overcommit=False
    )
    for change in changes:
        await inventories.replace_all(
            session, access, version, change.provider_uuid, change.generation, change.inventories
        )
        if change.inventories:
            # Placement's interim inventory write: one more generation, for parity.
            provider_id = provider_ids[change.provider_uuid]
            seen = await session.scalar(
                select(ResourceProvider.generation).where(ResourceProvider.id == provider_id)
            )
            await bump_generation(session, ResourceProvider, provider_id, int(seen or 0))
    await allocations.finish(session, prepared)


async def _existing_providers(
    session: AsyncSession, access: Access, changes: Sequence[InventoryChange]
) -> dict[str, int]:
    uuids = [change.provider_uuid for change in changes]
    rows = await session.execute(
        select(ResourceProvider.uuid, ResourceProvider.id, ResourceProvider.owner_project_id).where(
            ResourceProvider.uuid.in_(uuids)
        )
    )
    found = {
        uuid: id_ for uuid, id_, owner in rows.all() if access.allows(actions.PROVIDERS_READ, owner)
    }
    for uuid in uuids:
        if uuid not in found:
            raise bad_request(
                f"reshaper inventories name unknown provider {uuid}",
                PROVIDER_NOT_FOUND,
                pointer=f"/inventories/{uuid}",
            )
    return found
