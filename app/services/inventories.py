"""A provider's inventories: what it has of each resource class, and how it may be handed out.

Every change locks the provider first, as allocation writes do, and bumps its generation in the
statement that checks it. A change that would remove a class with allocations, or leave
allocations above the new capacity, is 409 `placement.inventory.inuse` and changes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.authz.access import Access
from app.errors import (
    CONCURRENT_UPDATE,
    INVENTORY_INUSE,
    ApiError,
    bad_request,
    conflict,
    not_found,
)
from app.microversion import Microversion
from app.models import Inventory, ResourceClass, ResourceProvider
from app.schemas.inventories import InventoryFields
from app.services import providers
from app.services.capacity import InventoryLimits, capacity, usage_by_provider_class
from app.services.provider_locks import lock_providers
from app.statements import GenerationConflict, bump_generation
from app.timeutil import latest

# From 1.26 an inventory may reserve all of its total (capacity zero).
RESERVED_EQUAL_TOTAL_SINCE = 26
FIELDS = ("total", "reserved", "min_unit", "max_unit", "step_size", "allocation_ratio")


@dataclass(frozen=True)
class ProviderInventory:
    generation: int
    inventories: dict[str, Inventory]

    @property
    def modified(self) -> datetime:
        return latest(among=(i.updated_at or i.created_at for i in self.inventories.values()))


def shape(inventory: Inventory | InventoryFields) -> dict[str, int | float]:
    return {field: getattr(inventory, field) for field in FIELDS}


async def _by_class(session: AsyncSession, provider_id: int) -> dict[str, Inventory]:
    rows = await session.execute(
        select(ResourceClass.name, Inventory)
        .join(ResourceClass, ResourceClass.id == Inventory.resource_class_id)
        .where(Inventory.resource_provider_id == provider_id)
        .order_by(ResourceClass.name)
    )
    return {name: inventory for name, inventory in rows.all()}


async def read(session: AsyncSession, access: Access, uuid: str) -> ProviderInventory:
    provider = await providers.get(session, access, uuid)
    return ProviderInventory(provider.generation, await _by_class(session, provider.id))


def _validate(version: Microversion, name: str, fields: InventoryFields) -> None:
    """Bounds the schema cannot express: capacity, and units that can never be allocated."""
    cap = capacity(fields.total, fields.reserved, fields.allocation_ratio)
    too_small = cap < 0 if version.at_least(RESERVED_EQUAL_TOTAL_SINCE) else cap <= 0
    if too_small:
        raise bad_request(f"inventory {name}: reserved leaves no capacity")
    if fields.min_unit > fields.max_unit:
        raise bad_request(f"inventory {name}: min_unit > max_unit")
    if fields.step_size > fields.max_unit:
        raise bad_request(f"inventory {name}: step_size > max_unit")


async def _class_ids(session: AsyncSession, names: set[str]) -> dict[str, int]:
    if not names:
        return {}
    rows = await session.execute(
        select(ResourceClass.name, ResourceClass.id).where(ResourceClass.name.in_(names))
    )
    found = {name: id_ for name, id_ in rows.all()}
    missing = names - found.keys()
    if missing:
        raise bad_request(f"unknown resource classes {sorted(missing)[:5]}")
    return found


async def _check_in_use(
    session: AsyncSession,
    provider_id: int,
    class_ids: Mapping[str, int],
    current: Mapping[str, Inventory],
    wanted: Mapping[str, InventoryFields],
) -> None:
    """409 inventory.inuse when a class with allocations goes, or shrinks below its usage."""
    usage = await usage_by_provider_class(session, [provider_id])
    ids = {name: inv.resource_class_id for name, inv in current.items()} | dict(class_ids)
    for name in current:
        used = usage.get((provider_id, ids[name]), 0)
        if not used:
            continue
        if name not in wanted:
            raise conflict(f"inventory {name} has allocations", INVENTORY_INUSE)
        new = wanted[name]
        if used > InventoryLimits.of(new).capacity:
            raise conflict(f"inventory {name}: usage {used} above new capacity", INVENTORY_INUSE)


def _check_generation(provider: providers.Provider, seen: int) -> None:
    if seen != provider.generation:
        raise ApiError(409, CONCURRENT_UPDATE, log_detail=f"stale generation {seen}")


async def _apply(
    session: AsyncSession,
    provider: providers.Provider,
    wanted: Mapping[str, InventoryFields],
    *,
    replace: bool,
    client_generation: int | None,
) -> ProviderInventory:
    """Make the provider's inventory `wanted` (for the named classes, or all of it)."""
    # The provider first, as every allocation write takes it before it changes a count on
    # these rows: then neither waits on the other holding what the other needs, and the
    # usage read next cannot move until we commit.
    await lock_providers(session, [provider.id])
    current = await _by_class(session, provider.id)
    class_ids = await _class_ids(session, set(wanted) - current.keys())
    kept = {n: current[n] for n in current if replace or n in wanted}
    await _check_in_use(session, provider.id, class_ids, kept, wanted)
    if replace:
        gone = [inv.id for name, inv in current.items() if name not in wanted]
        if gone:
            await session.execute(delete(Inventory).where(Inventory.id.in_(gone)))
    for name, fields in wanted.items():
        if name in current:
            await session.execute(
                update(Inventory)
                .where(Inventory.id == current[name].id)
                .values(**shape(fields))
                .execution_options(synchronize_session=False)
            )
        else:
            session.add(
                Inventory(
                    resource_provider_id=provider.id,
                    resource_class_id=class_ids[name],
                    **shape(fields),
                )
            )
    try:
        await session.flush()
    except IntegrityError as exc:
        raise GenerationConflict(f"inventory write raced: {exc.orig}") from None
    seen = provider.generation if client_generation is None else client_generation
    generation = await bump_generation(
        session, ResourceProvider, provider.id, seen, from_client=client_generation is not None
    )
    # Re-read: the rows carry the timestamps the database gave them.
    session.expire_all()
    return ProviderInventory(generation, await _by_class(session, provider.id))


async def replace_all(
    session: AsyncSession,
    access: Access,
    version: Microversion,
    uuid: str,
    generation: int,
    wanted: Mapping[str, InventoryFields],
) -> ProviderInventory:
    """PUT /inventories: the provider's whole inventory becomes `wanted`."""
    provider = await providers.get_for_write(session, access, uuid)
    _check_generation(provider, generation)
    for name, fields in wanted.items():
        _validate(version, name, fields)
    return await _apply(session, provider, wanted, replace=True, client_generation=generation)


async def delete_all(session: AsyncSession, access: Access, uuid: str) -> None:
    """DELETE /inventories (1.5+): no generation from the client, as in Placement."""
    provider = await providers.get_for_write(session, access, uuid)
    await _apply(session, provider, {}, replace=True, client_generation=None)


async def create_one(
    session: AsyncSession,
    access: Access,
    version: Microversion,
    uuid: str,
    name: str,
    fields: InventoryFields,
) -> ProviderInventory:
    """POST /inventories: add one class the provider does not have yet."""
    provider = await providers.get_for_write(session, access, uuid)
    _validate(version, name, fields)
    current = await _by_class(session, provider.id)
    if name in current:
        raise conflict(f"inventory {name} exists", CONCURRENT_UPDATE)
    return await _apply(session, provider, {name: fields}, replace=False, client_generation=None)


async def update_one(
    session: AsyncSession,
    access: Access,
    version: Microversion,
    uuid: str,
    name: str,
    generation: int,
    fields: InventoryFields,
) -> ProviderInventory:
    """PUT /inventories/{rc}: change one class the provider already has."""
    provider = await providers.get_for_write(session, access, uuid)
    _check_generation(provider, generation)
    _validate(version, name, fields)
    current = await _by_class(session, provider.id)
    if name not in current:
        raise bad_request(f"provider has no inventory of {name[:64]!r}")
    return await _apply(
        session, provider, {name: fields}, replace=False, client_generation=generation
    )


async def delete_one(session: AsyncSession, access: Access, uuid: str, name: str) -> None:
    provider = await providers.get_for_write(session, access, uuid)
    await lock_providers(session, [provider.id])  # as in _apply
    current = await _by_class(session, provider.id)
    if name not in current:
        raise not_found(f"provider has no inventory of {name[:64]!r}")
    usage = await usage_by_provider_class(session, [provider.id])
    if usage.get((provider.id, current[name].resource_class_id)):
        raise conflict(f"inventory {name} has allocations", INVENTORY_INUSE)
    await session.execute(delete(Inventory).where(Inventory.id == current[name].id))
    await bump_generation(session, ResourceProvider, provider.id, provider.generation)
