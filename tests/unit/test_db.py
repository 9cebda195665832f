"""Database.write: writers queue for the pool's connections, for a bounded time; statements on
the hot path (`execute_core`, run by the driver itself on PostgreSQL) belong to the unit."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from fastapi import FastAPI
from sqlalchemy import bindparam, func, insert, literal, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import Database
from app.models import Allocation, Project, ResourceProvider
from app.models.base import utcnow
from app.statements import _compiled, execute_core
from tests.conftest import test_settings as settings_for


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[Database]:
    """The test database (each backend), with a pool of one connection."""
    db = Database(settings_for(database_url, database_pool_size=1, database_pool_timeout=0.5))
    yield db
    await db.dispose()


async def test_a_writer_that_waits_longer_than_the_pool_timeout_gives_up(
    database: Database,
) -> None:
    """The caller sees 503 (TimeoutError), never a request that hangs."""
    release = asyncio.Event()

    async def hold(session: AsyncSession) -> None:
        await session.execute(text("SELECT 1"))
        await release.wait()

    holder = asyncio.create_task(database.write(hold))
    await asyncio.sleep(0.05)
    with pytest.raises(TimeoutError):
        await database.write(hold)
    release.set()
    await holder


def test_a_hot_path_statement_must_name_every_defaulted_column() -> None:
    """The driver runs hot-path statements as compiled: SQLAlchemy would fill `created_at`
    on each execution, the driver would not, so such a statement is refused up front."""
    with pytest.raises(TypeError, match="not runnable as compiled"):
        _compiled(insert(Allocation).values(used=bindparam("used")))
    with pytest.raises(TypeError, match="not runnable as compiled"):  # updated_at's onupdate
        _compiled(update(ResourceProvider).values(generation=bindparam("next")))


_TWO_AMONG = select(literal(1)).where(literal(2).in_(bindparam("xs", expanding=True)))


async def test_a_hot_path_statement_binds_lists_of_any_length(database: Database) -> None:
    async def hits(xs: list[int]) -> int:
        return len(await database.write(lambda s: execute_core(s, _TWO_AMONG, {"xs": xs})))

    shapes = ([2], [1, 2, 3], [], [1], [5, 4, 3, 2], [2])
    assert [await hits(xs) for xs in shapes] == [1, 1, 0, 0, 1, 1]


_ADD_PROJECT = insert(Project).values(
    external_id=bindparam("name"), created_at=bindparam("created_at")
)
_PROJECTS_NAMED = select(func.count()).where(Project.external_id == bindparam("name"))


async def test_what_a_failed_unit_ran_on_the_hot_path_is_rolled_back(
    app: FastAPI, database: Database
) -> None:
    row = {"name": "rolled-back-project", "created_at": utcnow()}

    async def add_then_fail(session: AsyncSession) -> None:
        await execute_core(session, _ADD_PROJECT, row)
        raise RuntimeError("the unit fails after its insert")

    with pytest.raises(RuntimeError):
        await database.write(add_then_fail)
    count = await database.write(lambda s: execute_core(s, _PROJECTS_NAMED, row))
    assert count[0][0] == 0
    await database.write(lambda s: execute_core(s, _ADD_PROJECT, row))  # and a unit that works
    count = await database.write(lambda s: execute_core(s, _PROJECTS_NAMED, row))
    assert count[0][0] == 1


async def test_a_connection_returned_inside_a_transaction_is_never_handed_out_again(
    app: FastAPI, database: Database
) -> None:
    """A write whose rollback never ran (its task cancelled at the wrong moment) must not
    lend its open transaction, and what it wrote, to the next request."""
    async with database.engine.connect() as conn:
        driver = (await conn.get_raw_connection()).driver_connection
        assert driver is not None
        await driver.execute("BEGIN")
        await driver.execute(
            "INSERT INTO projects (external_id, created_at) VALUES ('left-open', CURRENT_TIMESTAMP)"
        )
    # back in the pool (of one connection on PostgreSQL), inside that transaction
    row = {"name": "left-open"}
    count = await database.write(lambda s: execute_core(s, _PROJECTS_NAMED, row))
    assert count[0][0] == 0


async def test_the_sessions_statements_and_the_hot_paths_share_one_transaction(
    app: FastAPI, database: Database
) -> None:
    """On PostgreSQL a write's session takes the write's connection only once it runs a
    statement: what it writes still commits or rolls back with the hot path's statements,
    and the connection goes back to the pool (of one) every time."""
    by_session, by_driver = {"name": "by-session"}, {"name": "by-driver", "created_at": utcnow()}

    async def counts() -> list[int]:
        async def count(session: AsyncSession) -> list[int]:
            return [
                (await execute_core(session, _PROJECTS_NAMED, row))[0][0]
                for row in (by_session, by_driver)
            ]

        return await database.write(count)

    async def both_then_fail(session: AsyncSession) -> None:
        await session.execute(insert(Project).values(external_id="by-session", created_at=utcnow()))
        await execute_core(session, _ADD_PROJECT, by_driver)
        raise RuntimeError("the unit fails after both inserts")

    async def both(session: AsyncSession) -> None:
        session.add(Project(external_id="by-session", created_at=utcnow()))  # flushed at the end
        await execute_core(session, _ADD_PROJECT, by_driver)

    with pytest.raises(RuntimeError):
        await database.write(both_then_fail)
    assert await counts() == [0, 0]
    await database.write(both)
    assert await counts() == [1, 1]
