"""Allocations: what consumers hold on which providers, and the one way they are written.

Every write (PUT, POST, the reshaper) replaces the complete allocations of the consumers it
names, inside the caller's transaction (`Database.write`), in this order:

1. check the payload: caller's project, resource classes;
2. read the consumers: ownership, consumer generations (1.28+); record projects, users and
   consumer types (shared rows, before any lock is held);
3. create or bump the consumers (`allocation_consumers`): their rows are then ours until
   commit, so what they hold cannot change under us; read it;
4. lock the providers this write claims on and those it leaves (`provider_locks`), in
   ascending id order (so two multi-provider writers can never deadlock; every writer takes
   consumers first, then providers), bumping the generations of all but those it only leaves
   in the same statement: nothing can change a locked provider's allocations until we commit;
5. delete the consumers' old allocations; insert the new ones, adding them to their
   inventories' kept counts (`used`) and reading the inventories and counts as they were
   before, in the same round trip; check every new amount against them (raising rolls the
   insert back); take the old amounts off the counts (in ascending provider, class order);
   delete consumers left with nothing.

The usual claim, one consumer the client says is new (1.28+, generation null), skips the read
of step 2: the consumer is inserted with its project, user and type ids found in the same
statement, which on PostgreSQL then locks and bumps the providers (step 4) too. When the
consumer exists, or its project, user or type is new, that statement writes and locks
nothing, and the steps run in full.

Any failure raises and the whole transaction is rolled back: no consumer, project, user or
allocation row survives, and no generation moves.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.authz import actions
from app.authz.access import Access
from app.errors import (
    PROVIDER_NOT_FOUND,
    UNDEFINED,
    ApiError,
    bad_request,
    not_found,
)
from app.models import Allocation, Consumer, ResourceClass, ResourceProvider
from app.models.base import utcnow
from app.services import allocation_consumers, consumers
from app.services.allocation_consumers import ConsumerWrite
from app.services.capacity import InventoryLimits, add_usage, limits_and_usage, usage_deltas
from app.services.consumers import ConsumerRow
from app.services.provider_locks import (
    LOCK,
    LOCK_AND_BUMP,
    lock_params,
    lock_providers,
)
from app.services.standard import standard_class_id
from app.statements import GenerationConflict, bump_generation, execute_core


@dataclass(frozen=True)
class _Provider:
    id: int
    uuid: str
    owner: str | None


@dataclass
class _Old:
    """The allocations the consumers of a write hold right now."""

    rows: list[tuple[int, int, int, int]] = field(default_factory=list)  # consumer, rp, rc, used

    def providers_of(self, consumer_ids: set[int]) -> set[int]:
        return {rp for c, rp, _, _ in self.rows if c in consumer_ids}

    def used(self) -> dict[tuple[int, int], int]:
        return usage_deltas((rp, rc, used) for _, rp, rc, used in self.rows)


@dataclass
class Prepared:
    """A write checked, locked and with its consumers recorded; `finish` completes it."""

    writes: Sequence[ConsumerWrite]
    classes: dict[str, int]
    providers: dict[str, _Provider]
    consumer_ids: dict[str, int]
    # provider id -> generation under lock: those `finish` bumps (none if `prepare` did)
    bump: dict[int, int]
    relock: bool  # generations may have moved since (the reshaper's inventory writes)
    releasing: set[int]  # ids of existing consumers this write leaves with nothing
    old: _Old
    # Released amounts still counted in the inventories' `used` ((provider, class) -> amount).
    pending_release: dict[tuple[int, int], int] = field(default_factory=dict)
    # A write may leave an (already) overcommitted provider no worse than it was. Not the
    # reshaper: it changes the inventory too, so "before" says nothing about the new one.
    tolerate_overcommit: bool = True


# --- DELETE /allocations/{consumer_uuid} ---


async def delete_consumer(session: AsyncSession, access: Access, uuid: str) -> None:
    """Release everything a consumer holds; 404 when it holds nothing.

    As in Placement, provider generations do not move: a release never needs a guard.
    """
    consumer = (await consumers.find(session, [uuid])).get(uuid)
    if consumer is None:
        raise not_found(f"no allocations for consumer {uuid}")
    # Another project's consumer: 403, like every write to it (DESIGN section 6).
    access.require(actions.ALLOCATIONS_WRITE, consumer.project_id, uuid)
    released = await session.execute(
        delete(Allocation)
        .where(Allocation.consumer_id == consumer.id)
        .returning(Allocation.resource_provider_id, Allocation.resource_class_id, Allocation.used)
        .execution_options(synchronize_session=False)
    )
    deltas = usage_deltas((rp, rc, n) for rp, rc, n in released.all())
    # The counts are changed under the providers' locks, as claims change them (which take
    # the inventory rows in no set order): a release never holds a count a claim waits for
    # while waiting for one that claim holds. Generations do not move.
    await lock_providers(session, {rp for rp, _ in deltas})
    await add_usage(session, {key: -amount for key, amount in deltas.items()})
    await session.execute(
        delete(Consumer)
        .where(Consumer.id == consumer.id)
        .execution_options(synchronize_session=False)
    )


# --- writes ---


async def write(session: AsyncSession, access: Access, writes: Sequence[ConsumerWrite]) -> None:
    """PUT /allocations/{c} and POST /allocations: replace the consumers' allocations."""
    prepared = await prepare(session, access, writes)
    await finish(session, prepared)


async def prepare(
    session: AsyncSession,
    access: Access,
    writes: Sequence[ConsumerWrite],
    *,
    also_lock: Collection[int] = (),
    tolerate_overcommit: bool = True,
) -> Prepared:
    """Steps 1-4 and the deletion of the old allocations (the reshaper then changes inventory)."""
    _check_projects(access, writes)
    classes = await _class_ids(session, writes)
    existing: dict[str, ConsumerRow] = {}
    # The reshaper bumps its providers in `finish`: its consumer is created on its own.
    consumer_ids, provider_rows = await allocation_consumers.create_new(
        session, writes, lock=not also_lock
    )
    if consumer_ids is None:
        owner_names = allocation_consumers.owner_names(writes)
        existing, found = await consumers.read(session, (w.uuid for w in writes), owner_names)
        allocation_consumers.check(access, writes, existing)
        # Shared rows first, before any provider lock: a writer waiting on another's fresh
        # project row must not be holding a provider that one needs.
        owners = await consumers.ensure_owners(session, owner_names, found)
        # Then the consumers: once created or bumped their rows are ours until commit, so
        # what they hold cannot change under us. Every writer locks consumers, then providers.
        consumer_ids = await allocation_consumers.record(session, writes, existing, owners)
    had = sorted(c.id for c in existing.values())
    old = await _old_allocations(session, set(had))
    releasing = {existing[w.uuid].id for w in writes if not w.allocations and w.uuid in existing}
    # Placement bumps the providers a write allocates on, and those a released consumer held.
    released_from = old.providers_of(releasing)
    # The reshaper writes inventories (and generations) before `finish`: it bumps there.
    bump_now = not also_lock
    # The providers the consumers move away from are locked too (not bumped), in the same
    # sorted statement: the counts lowered there then never wait on a writer that waits on us.
    providers, locked = await _lock_providers_of(
        session,
        access,
        writes,
        released_from | set(also_lock),
        keep=old.providers_of(set(had)),
        bump=bump_now,
        rows=provider_rows,
    )
    bump = {p.id for p in providers.values()} | released_from
    if had:
        await session.execute(
            delete(Allocation)
            .where(Allocation.consumer_id.in_(had))
            .execution_options(synchronize_session=False)
        )
    # What the old allocations counted comes off the inventories' counts in `finish`, after the
    # capacity check (which subtracts it itself): the rows stay unlocked until then. The
    # reshaper needs it off before it changes inventories (a class it empties must read as
    # unused): at once.
    pending = old.used() if had else {}
    if also_lock and pending:
        await add_usage(session, {key: -amount for key, amount in pending.items()})
        pending = {}
    return Prepared(
        writes=writes,
        classes=classes,
        providers=providers,
        consumer_ids=consumer_ids,
        bump={} if bump_now else {id_: locked[id_] for id_ in sorted(bump)},
        relock=bool(also_lock),
        releasing=releasing,
        old=old,
        pending_release=pending,
        tolerate_overcommit=tolerate_overcommit,
    )


async def finish(session: AsyncSession, prepared: Prepared) -> None:
    """Step 5: insert, check capacity against the inventory as it is now (the reshaper's
    included), tidy up (and bump the providers, for the reshaper, whose generations
    `prepare` left alone)."""
    rows = _new_rows(prepared)
    if rows:
        now = utcnow()
        capacity = await limits_and_usage(
            session,
            (rp for _, rp, _, _ in rows),
            (rc for _, _, rc, _ in rows),
            inserting=[
                {
                    "consumer_id": c,
                    "resource_provider_id": rp,
                    "resource_class_id": rc,
                    "used": n,
                    "created_at": now,
                }
                for c, rp, rc, n in rows
            ],
        )
        pending = prepared.pending_release
        others = {
            key: (limits, used - pending.get(key, 0)) for key, (limits, used) in capacity.items()
        }
        # Raising here rolls the insert back with the rest of the transaction.
        _check_capacity(prepared, rows, others)
    # limits_and_usage counted the new rows; the released ones come off now, in one pass.
    await add_usage(session, {key: -n for key, n in prepared.pending_release.items()})
    seen = prepared.bump
    if prepared.relock:
        # ... and bumped their generations: read those again, under our lock.
        seen = await lock_providers(session, seen)
    for provider_id, generation in seen.items():
        await bump_generation(session, ResourceProvider, provider_id, generation)
    await consumers.delete_if_unused(session, prepared.releasing)


def _check_projects(access: Access, writes: Sequence[ConsumerWrite]) -> None:
    """A caller writes allocations only for projects it may write for (members: their own)."""
    for w in writes:
        access.require(actions.ALLOCATIONS_WRITE, w.project_id, w.uuid)


async def _class_ids(session: AsyncSession, writes: Sequence[ConsumerWrite]) -> dict[str, int]:
    names = {rc for w in writes for resources in w.allocations.values() for rc in resources}
    found = {name: id_ for name in names if (id_ := standard_class_id(name)) is not None}
    custom = names - found.keys()
    if custom:
        rows = await session.execute(
            select(ResourceClass.name, ResourceClass.id).where(ResourceClass.name.in_(custom))
        )
        found.update({name: id_ for name, id_ in rows.all()})
    for w in writes:
        for rp_uuid, resources in w.allocations.items():
            for rc in resources:
                if rc not in found:
                    raise bad_request(
                        f"no such resource class {rc[:64]!r}",
                        pointer=f"{w.pointer}/{rp_uuid}/resources/{rc}",
                    )
    return found


async def _lock_providers_of(
    session: AsyncSession,
    access: Access,
    writes: Sequence[ConsumerWrite],
    also: set[int],
    *,
    keep: set[int],
    bump: bool,
    rows: Sequence[Any] | None = None,
) -> tuple[dict[str, _Provider], dict[int, int]]:
    """Lock the payload's providers and the `also` and `keep` ones in ascending id order, in
    one statement that also bumps the generations of all but `keep` when `bump` (a round trip
    less under lock).
    `rows`: what that statement returned, when `_create_new_consumer` ran it already.

    Returns the payload's providers by UUID, and the generations of all locked ones by id.
    A payload provider the caller may not see is as unknown: 400.
    """
    uuids = {uuid for w in writes for uuid in w.allocations}
    if not uuids and not also and not keep:
        return {}, {}
    if rows is None:
        params = lock_params(uuids, also, bump=bump, keep=keep)
        rows = await execute_core(session, LOCK_AND_BUMP if bump else LOCK, params)
    locked: dict[int, int] = {}
    found: dict[str, _Provider] = {}
    for id_, uuid, owner, generation in rows:
        locked[id_] = generation
        if uuid in uuids and access.allows(actions.PROVIDERS_READ, owner):
            found[uuid] = _Provider(id_, uuid, owner)
    for w in writes:
        for uuid in w.allocations:
            if uuid not in found:
                raise bad_request(
                    f"allocation on unknown or invisible provider {uuid}",
                    PROVIDER_NOT_FOUND,
                    pointer=f"{w.pointer}/{uuid}",
                )
    if not also <= locked.keys():
        # A provider was deleted after we resolved it: decide again from the start.
        raise GenerationConflict("a provider disappeared before it could be locked")
    return found, locked


async def _old_allocations(session: AsyncSession, consumer_ids: set[int]) -> _Old:
    if not consumer_ids:
        return _Old()
    rows = await session.execute(
        select(
            Allocation.consumer_id,
            Allocation.resource_provider_id,
            Allocation.resource_class_id,
            Allocation.used,
        ).where(Allocation.consumer_id.in_(sorted(consumer_ids)))
    )
    return _Old([(c, rp, rc, used) for c, rp, rc, used in rows.all()])


def _new_rows(prepared: Prepared) -> list[tuple[int, int, int, int]]:
    return [
        (
            prepared.consumer_ids[w.uuid],
            prepared.providers[rp_uuid].id,
            prepared.classes[rc],
            amount,
        )
        for w in prepared.writes
        for rp_uuid, resources in w.allocations.items()
        for rc, amount in resources.items()
    ]


def _check_capacity(
    prepared: Prepared,
    rows: list[tuple[int, int, int, int]],
    capacity: Mapping[tuple[int, int], tuple[InventoryLimits, int]],
) -> None:
    """Every amount fits its inventory's units, and no provider ends up over capacity
    (unless it already was and this write does not make it worse).

    `capacity`: the inventories with their usage by others (the consumers' old allocations
    are deleted by then, the new ones not counted)."""
    old = prepared.old.used()
    adding = usage_deltas((rp_id, rc_id, amount) for _, rp_id, rc_id, amount in rows)
    for w in prepared.writes:
        for rp_uuid, resources in w.allocations.items():
            rp = prepared.providers[rp_uuid].id
            for rc, amount in resources.items():
                key = (rp, prepared.classes[rc])
                inventory, others = capacity.get(key, (None, 0))
                pointer = f"{w.pointer}/{rp_uuid}/resources/{rc}"
                if inventory is None:
                    raise _unallocatable(f"no {rc} inventory on provider {rp_uuid}", pointer)
                if not inventory.amount_ok(amount):
                    raise _unallocatable(
                        f"{rc} amount {amount} breaks min_unit/max_unit/step_size on {rp_uuid}",
                        pointer,
                    )
                before = others + old.get(key, 0)
                after = others + adding[key]
                if not inventory.accepts(before if prepared.tolerate_overcommit else 0, after):
                    raise _unallocatable(
                        f"{rc} on {rp_uuid}: {after} would exceed capacity {inventory.capacity}",
                        pointer,
                    )


def _unallocatable(log_detail: str, pointer: str) -> ApiError:
    # Placement answers 409 without a specific code; the pointer says which amount it was.
    return ApiError(409, UNDEFINED, log_detail=log_detail, pointer=pointer)
