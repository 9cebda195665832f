"""Consumers and who they belong to: projects, users and consumer types.

A consumer exists exactly while it has allocations: it is created by its first allocation
write and deleted when its last allocation goes. Projects, users and consumer types are
shared rows that concurrent writers may both try to create, so they are inserted with
"ignore duplicates" and then read back.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    DateTime,
    String,
    bindparam,
    delete,
    exists,
    insert,
    literal,
    null,
    select,
    true,
    union_all,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import Allocation, Consumer, ConsumerType, Project, User
from app.models.base import utcnow
from app.statements import GenerationConflict, dialect_of, execute_core, insert_ignoring_duplicates

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
_CONSUMER = "consumer"  # the `kind` of a consumer's row in _READ


def _owner_rows(*padding: Any) -> list[Any]:
    """One SELECT per kind of owner: (kind, name, id, *padding) of the named ones."""
    return [
        select(literal(kind), column, column.class_.id, *padding).where(
            column.in_(bindparam(kind, expanding=True))
        )
        for kind, column in _NAMES.items()
    ]


# The statements every allocation write runs are built once, with bound parameters:
# building and cache-keying a SQLAlchemy statement costs more than executing it.
# What an allocation write reads first, in one round trip: the consumers it names as
# (kind "consumer", uuid, id, generation, project, user, type), and the ids of the
# projects, users and types it records as (kind, name, id, NULL...).
_READ = union_all(
    select(
        literal(_CONSUMER),
        Consumer.uuid,
        Consumer.id,
        Consumer.generation,
        Project.external_id,
        User.external_id,
        ConsumerType.name,
    )
    .join(Project, Project.id == Consumer.project_id)
    .join(User, User.id == Consumer.user_id)
    .outerjoin(ConsumerType, ConsumerType.id == Consumer.consumer_type_id)
    .where(Consumer.uuid.in_(bindparam("uuids", expanding=True))),
    *_owner_rows(null(), null(), null(), null()),
)
_OWNER_IDS = union_all(*_owner_rows())


async def read(
    session: AsyncSession, uuids: Iterable[str], owners: dict[str, set[str]]
) -> tuple[dict[str, ConsumerRow], dict[str, dict[str, int]]]:
    """The consumers that exist among `uuids`, by UUID; and the ids of those of the `owners`
    (names by kind: "projects", "users", "types") that exist, by kind and name."""
    params = {"uuids": sorted(set(uuids))}
    params |= {kind: sorted(owners.get(kind, ())) for kind in _NAMES}
    found: dict[str, dict[str, int]] = {kind: {} for kind in _NAMES}
    if not any(params.values()):
        return {}, found
    consumers: dict[str, ConsumerRow] = {}
    for kind, name, id_, generation, project, user, type_name in await execute_core(
        session, _READ, params
    ):
        if kind == _CONSUMER:
            consumers[name] = ConsumerRow(id_, name, generation, project, user, type_name)
        else:
            found[kind][name] = id_
    return consumers, found


async def find(session: AsyncSession, uuids: Iterable[str]) -> dict[str, ConsumerRow]:
    """The consumers that exist among `uuids`, by UUID."""
    return (await read(session, uuids, {}))[0]


async def ensure_owners(
    session: AsyncSession, wanted: dict[str, set[str]], found: dict[str, dict[str, int]]
) -> Owners:
    """Ids of the `wanted` projects, users and types (names by kind), given those `found`
    already (by `read`): the missing ones are created (race-safe) and read back.

    No round trip at all when all exist, as they do for every write but a tenant's first.
    """
    missing = {kind: names - found[kind].keys() for kind, names in wanted.items()}
    if any(missing.values()):
        for kind, names in missing.items():
            # Another writer may insert the same name meanwhile: skip it, then read it back.
            column = _NAMES[kind]
            await insert_ignoring_duplicates(
                session, column.class_, [{column.key: name} for name in sorted(names)]
            )
        params = {kind: sorted(wanted.get(kind, ())) for kind in _NAMES}
        found = {kind: {} for kind in _NAMES}
        for kind, name, id_ in await execute_core(session, _OWNER_IDS, params):
            found[kind][name] = id_
    return Owners(projects=found["projects"], users=found["users"], types=found["types"])


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


@functools.cache
def create_if_new_statement(dialect: str, typed: bool) -> Any:
    """INSERT a consumer whose project, user (and type) are named, not numbered: nothing when
    one of them is not recorded yet, or the consumer exists."""
    owners = select(
        bindparam("uuid", type_=String),
        Project.id,
        User.id,
        ConsumerType.id if typed else null(),
        literal(1),
        bindparam("now", type_=DateTime(timezone=True)),
    ).where(Project.external_id == bindparam("project"), User.external_id == bindparam("user"))
    owners = owners.select_from(Project).join(User, true())
    if typed:
        owners = owners.join(ConsumerType, true()).where(ConsumerType.name == bindparam("type"))
    columns = ["uuid", "project_id", "user_id", "consumer_type_id", "generation", "created_at"]
    statement = (pg_insert if dialect == "postgresql" else sqlite_insert)(Consumer)
    return (
        statement.from_select(columns, owners)
        .on_conflict_do_nothing(index_elements=["uuid"])
        .returning(Consumer.id)
    )


async def create_if_new(
    session: AsyncSession, uuid: str, project: str, user: str, consumer_type: str | None
) -> int | None:
    """Create a consumer the client says is new, its owners found in the same statement: its
    id. None, and nothing written, when the consumer exists already or its project, user or
    type is not recorded yet: then `read`, `ensure_owners` and `create` take the long way.

    The usual claim (a new instance of a known project) is thus one round trip, not two.
    """
    statement = create_if_new_statement(dialect_of(session), consumer_type is not None)
    rows = await execute_core(
        session, statement, create_if_new_params(uuid, project, user, consumer_type)
    )
    return int(rows[0][0]) if rows else None


def create_if_new_params(
    uuid: str, project: str, user: str, consumer_type: str | None
) -> dict[str, Any]:
    params = {"uuid": uuid, "project": project, "user": user, "now": utcnow()}
    if consumer_type is not None:
        params["type"] = consumer_type
    return params


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
