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

from sqlalchemy import bindparam, delete, exists, insert, literal, select, union_all
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import GenerationConflict, execute_core, insert_ignoring_duplicates
from app.models import Allocation, Consumer, ConsumerType, Project, User
from app.models.base import utcnow

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


# The statements every allocation write runs are built once, with bound parameters:
# building and cache-keying a SQLAlchemy statement costs more than executing it.
_FIND = (
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
    .where(Consumer.uuid.in_(bindparam("uuids", expanding=True)))
)


async def find(session: AsyncSession, uuids: Iterable[str]) -> dict[str, ConsumerRow]:
    """The consumers that exist among `uuids`, by UUID."""
    wanted = sorted(set(uuids))
    if not wanted:
        return {}
    rows = await execute_core(session, _FIND, {"uuids": wanted})
    return {
        uuid: ConsumerRow(id_, uuid, generation, project, user, type_name)
        for id_, uuid, generation, project, user, type_name in rows
    }


@dataclass(frozen=True)
class Owners:
    """Ids of projects, users and consumer types, by the names the API uses."""

    projects: dict[str, int]
    users: dict[str, int]
    types: dict[str, int]


# Owners kind -> the column holding the name the API uses.
_NAMES: dict[str, Any] = {
    "projects": Project.external_id,
    "users": User.external_id,
    "types": ConsumerType.name,
}


async def ensure_owners(
    session: AsyncSession, *, projects: set[str], users: set[str], types: set[str]
) -> Owners:
    """Ids of the named projects, users and types, creating the missing ones (race-safe).

    One round trip when all exist already, as they do for every write but a tenant's first.
    """
    wanted = {"projects": projects, "users": users, "types": types}
    found = await _owner_ids(session, wanted)
    missing = {kind: names - found[kind].keys() for kind, names in wanted.items()}
    if any(missing.values()):
        for kind, names in missing.items():
            # Another writer may insert the same name meanwhile: skip it, then read it back.
            column = _NAMES[kind]
            await insert_ignoring_duplicates(
                session, column.class_, [{column.key: name} for name in sorted(names)]
            )
        found = await _owner_ids(session, wanted)
    return Owners(**found)


_OWNER_IDS = union_all(
    *(
        select(
            literal(kind).label("kind"), column.label("name"), column.class_.id.label("id")
        ).where(column.in_(bindparam(kind, expanding=True)))
        for kind, column in _NAMES.items()
    )
)


async def _owner_ids(
    session: AsyncSession, wanted: dict[str, set[str]]
) -> dict[str, dict[str, int]]:
    found: dict[str, dict[str, int]] = {kind: {} for kind in wanted}
    if any(wanted.values()):
        params = {kind: sorted(names) for kind, names in wanted.items()}
        for kind, name, id_ in await execute_core(session, _OWNER_IDS, params):
            found[kind][name] = id_
    return found


async def type_ids(session: AsyncSession, names: set[str]) -> dict[str, int]:
    """Ids of existing consumer types (reads only; for filters)."""
    if not names:
        return {}
    rows = await session.execute(
        select(ConsumerType.name, ConsumerType.id).where(ConsumerType.name.in_(names))
    )
    return {name: id_ for name, id_ in rows.all()}


_CREATE = (
    insert(Consumer)
    .values(
        {
            column: bindparam(column)
            for column in (
                "uuid", "project_id", "user_id", "consumer_type_id", "generation", "created_at"
            )
        }
    )
    .returning(Consumer.id)
)  # fmt: skip


async def create(
    session: AsyncSession,
    uuid: str,
    *,
    project_id: int,
    user_id: int,
    consumer_type_id: int | None,
) -> int:
    """Insert a consumer at generation 1: created and written in one step, as Placement shows."""
    try:
        created = await execute_core(
            session,
            _CREATE,
            {
                "uuid": uuid,
                "project_id": project_id,
                "user_id": user_id,
                "consumer_type_id": consumer_type_id,
                "generation": 1,
                "created_at": utcnow(),
            },
        )
        return int(created[0][0])
    except IntegrityError as exc:
        # Another request created this consumer after we looked: decide again from the start.
        raise GenerationConflict(f"consumer {uuid} insert raced: {exc.orig}") from None


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
