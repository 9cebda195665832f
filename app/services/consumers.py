"""Consumers and who they belong to: projects, users and consumer types.

A consumer exists exactly while it has allocations: it is created by its first allocation
write and deleted when its last allocation goes. Projects, users and consumer types are
shared rows that concurrent writers may both try to create, so they are inserted with
"ignore duplicates" and then read back.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, exists, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import GenerationConflict, insert_ignoring_duplicates
from app.models import Allocation, Consumer, ConsumerType, Project, User

# What /allocations and /usages call a consumer that was written without a type (before 1.38).
UNKNOWN_TYPE = "unknown"


@dataclass(frozen=True)
class ConsumerRow:
    """A consumer with its project, user and type spelled as the API spells them."""

    id: int
    uuid: str
    generation: int
    project_id: str
    user_id: str
    consumer_type: str | None


async def find(session: AsyncSession, uuids: Iterable[str]) -> dict[str, ConsumerRow]:
    """The consumers that exist among `uuids`, by UUID."""
    wanted = sorted(set(uuids))
    if not wanted:
        return {}
    rows = await session.execute(
        select(
            Consumer.id,
            Consumer.uuid,
            Consumer.generation,
            Project.external_id.label("project"),
            User.external_id.label("user"),
            ConsumerType.name.label("type_name"),
        )
        .join(Project, Project.id == Consumer.project_id)
        .join(User, User.id == Consumer.user_id)
        .outerjoin(ConsumerType, ConsumerType.id == Consumer.consumer_type_id)
        .where(Consumer.uuid.in_(wanted))
    )
    return {
        r.uuid: ConsumerRow(r.id, r.uuid, r.generation, r.project, r.user, r.type_name)
        for r in rows.all()
    }


async def _ensure(session: AsyncSession, column: Any, names: set[str]) -> dict[str, int]:
    """Ids of the named rows, creating those that are missing (race-safe)."""
    if not names:
        return {}
    model = column.class_
    select_ids = select(column, model.id).where(column.in_(names))
    found = {name: id_ for name, id_ in (await session.execute(select_ids)).all()}
    missing = names - found.keys()
    if missing:
        # Another writer may insert the same name meanwhile: skip it, then read it back.
        await insert_ignoring_duplicates(
            session, model, [{column.key: name} for name in sorted(missing)]
        )
        found = {name: id_ for name, id_ in (await session.execute(select_ids)).all()}
    return found


async def ensure_projects(session: AsyncSession, names: set[str]) -> dict[str, int]:
    return await _ensure(session, Project.external_id, names)


async def ensure_users(session: AsyncSession, names: set[str]) -> dict[str, int]:
    return await _ensure(session, User.external_id, names)


async def ensure_types(session: AsyncSession, names: set[str]) -> dict[str, int]:
    return await _ensure(session, ConsumerType.name, names)


async def type_ids(session: AsyncSession, names: set[str]) -> dict[str, int]:
    """Ids of existing consumer types (reads only; for filters)."""
    if not names:
        return {}
    rows = await session.execute(
        select(ConsumerType.name, ConsumerType.id).where(ConsumerType.name.in_(names))
    )
    return {name: id_ for name, id_ in rows.all()}


async def create(
    session: AsyncSession,
    uuid: str,
    *,
    project_id: int,
    user_id: int,
    consumer_type_id: int | None,
) -> int:
    """Insert a consumer at generation 1: created and written in one step, as Placement shows."""
    consumer = Consumer(
        uuid=uuid,
        project_id=project_id,
        user_id=user_id,
        consumer_type_id=consumer_type_id,
        generation=1,
    )
    session.add(consumer)
    try:
        await session.flush()
    except IntegrityError as exc:
        # Another request created this consumer after we looked: decide again from the start.
        raise GenerationConflict(f"consumer {uuid} insert raced: {exc.orig}") from None
    return consumer.id


async def delete_if_unused(session: AsyncSession, consumer_ids: Iterable[int]) -> None:
    """Delete those of the consumers that no longer have any allocation."""
    ids = sorted(set(consumer_ids))
    if not ids:
        return
    await session.execute(
        delete(Consumer)
        .where(
            Consumer.id.in_(ids),
            ~exists().where(Allocation.consumer_id == Consumer.id),
        )
        .execution_options(synchronize_session=False)
    )
