"""The consumers of an allocation write: what each write says of its consumer, and how the
consumer rows are created, checked and bumped before any provider is locked (steps 2-3 of
`app.services.allocations`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.authz import actions
from app.authz.access import Access
from app.errors import CONCURRENT_UPDATE, ApiError
from app.models import Consumer
from app.services import consumers
from app.services.consumers import ConsumerRow
from app.services.provider_locks import create_and_lock, lock_params
from app.statements import bump_generation, dialect_of, execute_core


@dataclass(frozen=True)
class ConsumerWrite:
    """One consumer's complete new allocations, whatever microversion they came in."""

    uuid: str
    project_id: str
    user_id: str
    # provider UUID -> resource class name -> amount; empty releases everything.
    allocations: Mapping[str, Mapping[str, int]]
    # 1.28+: the generation the client last saw (None: "this consumer is new").
    generation: int | None = None
    check_generation: bool = False
    # 1.38+: the consumer's type; None keeps whatever the consumer had.
    consumer_type: str | None = None
    # Where this consumer's allocations sit in the request body, for error pointers.
    pointer: str = "/allocations"


async def create_new(
    session: AsyncSession, writes: Sequence[ConsumerWrite], *, lock: bool
) -> tuple[dict[str, int] | None, Sequence[Any] | None]:
    """The usual claim, one consumer the client says is new (1.28+, generation null): create
    it in one statement, on PostgreSQL also locking its providers when `lock`.

    Its ids by UUID, and the provider lock's rows (None: not run yet). No ids when that does
    not apply or did not create it (it exists: then 409; or its project, user or type is new):
    then nothing is locked and `prepare` takes the long way.
    """
    if len(writes) != 1:
        return None, None
    w = writes[0]
    if not (w.allocations and w.check_generation and w.generation is None):
        return None, None
    if not (lock and dialect_of(session) == "postgresql"):
        id_ = await consumers.create_if_new(
            session, w.uuid, w.project_id, w.user_id, w.consumer_type
        )
        return (None if id_ is None else {w.uuid: id_}), None
    params = consumers.create_if_new_params(w.uuid, w.project_id, w.user_id, w.consumer_type)
    params |= lock_params(set(w.allocations), set(), bump=True)
    rows = await execute_core(session, create_and_lock(w.consumer_type is not None), params)
    if not rows:
        return None, None
    # An unknown provider locks nothing: one row, with no provider in it.
    return {w.uuid: rows[0][0]}, [row[1:] for row in rows if row[1] is not None]


def check(
    access: Access, writes: Sequence[ConsumerWrite], existing: Mapping[str, ConsumerRow]
) -> None:
    for w in writes:
        consumer = existing.get(w.uuid)
        if consumer is not None:
            # Another project's consumer: 403 (DESIGN section 6).
            access.require(actions.ALLOCATIONS_WRITE, consumer.project_id, w.uuid)
        if not w.check_generation:
            continue
        seen = consumer.generation if consumer else None
        if w.generation != seen:
            raise ApiError(
                409,
                CONCURRENT_UPDATE,
                log_detail=f"consumer {w.uuid} generation is {seen}, request said {w.generation}",
            )


def owner_names(writes: Sequence[ConsumerWrite]) -> dict[str, set[str]]:
    # Only consumers that keep allocations need their project, user and type recorded.
    kept = [w for w in writes if w.allocations]
    return {
        "projects": {w.project_id for w in kept},
        "users": {w.user_id for w in kept},
        "types": {w.consumer_type for w in kept if w.consumer_type is not None},
    }


async def record(
    session: AsyncSession,
    writes: Sequence[ConsumerWrite],
    existing: Mapping[str, ConsumerRow],
    owners: consumers.Owners,
) -> dict[str, int]:
    """Create new consumers, update and bump existing ones; consumer ids by UUID.

    A new consumer with nothing to allocate is not created at all.
    """
    ids: dict[str, int] = {}
    for w in sorted(writes, key=lambda w: w.uuid):  # row locks in one order, too
        consumer = existing.get(w.uuid)
        values: dict[str, int] = {}
        type_id = None
        if w.allocations:
            values = {
                "project_id": owners.projects[w.project_id],
                "user_id": owners.users[w.user_id],
            }
            if w.consumer_type is not None:
                values["consumer_type_id"] = type_id = owners.types[w.consumer_type]
        if consumer is not None:
            # A generation the client sent is its view (stale: 409 now); one we read
            # ourselves that moved means another writer won (retry the unit).
            await bump_generation(
                session,
                Consumer,
                consumer.id,
                consumer.generation,
                from_client=w.check_generation,
                values=values,
            )
            ids[w.uuid] = consumer.id
        elif w.allocations:  # a new consumer with nothing to allocate is never created
            ids[w.uuid] = await consumers.create(
                session,
                w.uuid,
                project_id=values["project_id"],
                user_id=values["user_id"],
                consumer_type_id=type_id,
            )
    return ids
