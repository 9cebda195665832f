"""Database.write: writers queue for the pool's connections, for a bounded time."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import bindparam, insert, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import Database, _compiled
from app.models import Allocation, ResourceProvider
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
