"""Provider row locks: how every write takes the providers it changes, in ascending id order.

One statement locks the providers a write names (by uuid) and those it also needs (by id),
bumping their generations when asked; on PostgreSQL the usual claim does it in the statement
that creates its consumer. Two writers sharing providers queue on them in the same order, so
neither deadlocks the other.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import Any

from sqlalchemy import bindparam, case, exists, or_, select, true, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import ResourceProvider
from app.models.base import utcnow
from app.services import consumers
from app.statements import GenerationConflict

# Built once (binding parameters): one of these runs in every allocation write. `uuids` and
# `ids` are the providers a write changes; `keep` those it only takes allocations off (a move's
# old providers): locked in the same order, so the counts it lowers there are its alone, but
# their generations stay as they are, as Placement leaves them.
_CHANGED = or_(
    ResourceProvider.uuid.in_(bindparam("uuids", expanding=True)),
    ResourceProvider.id.in_(bindparam("ids", expanding=True)),
)
_NAMED_PROVIDERS = (
    select(ResourceProvider.id)
    .where(or_(_CHANGED, ResourceProvider.id.in_(bindparam("keep", expanding=True))))
    .order_by(ResourceProvider.id)
    .with_for_update(key_share=True)
)
_PROVIDER_COLUMNS = (
    ResourceProvider.id,
    ResourceProvider.uuid,
    ResourceProvider.owner_project_id,
    ResourceProvider.generation,
)
LOCK = select(*_PROVIDER_COLUMNS).where(ResourceProvider.id.in_(_NAMED_PROVIDERS))
# The locking sub-select takes the row locks in id order; the UPDATE then bumps the changed.
LOCK_AND_BUMP = (
    update(ResourceProvider)
    .where(ResourceProvider.id.in_(_NAMED_PROVIDERS))
    .values(
        generation=ResourceProvider.generation + case((_CHANGED, 1), else_=0),
        updated_at=case((_CHANGED, bindparam("now")), else_=ResourceProvider.updated_at),
    )
    .returning(*_PROVIDER_COLUMNS)
    .execution_options(synchronize_session=False)
)


def lock_params(
    uuids: set[str], also: set[int], *, bump: bool, keep: Iterable[int] = ()
) -> dict[str, Any]:
    params: dict[str, Any] = {"uuids": sorted(uuids), "ids": sorted(also), "keep": sorted(keep)}
    if bump:
        params["now"] = utcnow()
    return params


@functools.cache
def create_and_lock(typed: bool) -> Any:
    """PostgreSQL: create the new consumer and, only once it is created, lock and bump the
    payload's providers (`LOCK_AND_BUMP`), in one statement: (consumer id, *provider row).

    The lock waits on the consumer's insert (it reads its result), so the lock order is the
    one every write keeps: consumers, then providers. No consumer created, nothing locked.
    """
    created = consumers.create_if_new_statement("postgresql", typed).cte("created")
    locked = LOCK_AND_BUMP.where(exists(select(created.c.id))).cte("locked")
    return select(created.c.id, *locked.c).select_from(created).outerjoin(locked, true())


async def lock_providers(session: AsyncSession, provider_ids: Iterable[int]) -> dict[int, int]:
    """Lock provider rows in ascending id order; their generations, by id.

    PostgreSQL takes the row locks in the ORDER BY order, so every writer queues on the
    providers it shares with another in the same order: no deadlock, and no lost race to
    retry. SQLite serialises writers at BEGIN IMMEDIATE and ignores FOR UPDATE.
    """
    ids = sorted(set(provider_ids))
    if not ids:
        return {}
    rows = await session.execute(
        select(ResourceProvider.id, ResourceProvider.generation)
        .where(ResourceProvider.id.in_(ids))
        .order_by(ResourceProvider.id)
        # FOR NO KEY UPDATE: what the generation UPDATE takes anyway; rows that merely
        # reference the provider (inventories, allocations) can still be inserted.
        .with_for_update(key_share=True)
    )
    locked = {id_: generation for id_, generation in rows.all()}
    if len(locked) != len(ids):
        # A provider was deleted after we resolved it: decide again from the start.
        raise GenerationConflict("a provider disappeared before it could be locked")
    return locked
