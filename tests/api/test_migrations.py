"""One Alembic history for both databases: it reaches head from empty, matches the models
exactly (what `alembic check` verifies), and several processes starting at once on a fresh
database end with one copy of every standard class and trait.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import os_resource_classes
import os_traits
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from app.engines import make_engine
from app.migrations_runner import head_revision, upgrade
from app.models import Base
from tests.conftest import PG_URL, scratch_database
from tests.conftest import test_settings as settings_for

BACKENDS = ["sqlite"] + (["postgresql"] if PG_URL else [])


@pytest.fixture(params=BACKENDS)
async def empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    async with scratch_database(request.param, tmp_path) as url:
        yield url


def _drift(connection: Connection) -> list[object]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, Base.metadata))


def _revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


async def test_empty_database_upgrades_to_head_with_no_drift(empty_database: str) -> None:
    engine = make_engine(empty_database, settings_for(empty_database))
    try:
        await upgrade(engine)
        await upgrade(engine)  # a second run is a no-op
        async with engine.connect() as conn:
            assert await conn.run_sync(_revision) == head_revision()
            assert await conn.run_sync(_drift) == []
    finally:
        await engine.dispose()


_START = textwrap.dedent(
    """
    import asyncio, sys
    from app.engines import make_engine
    from app.main import create_app
    from app.migrations_runner import upgrade
    from app.settings import Settings

    settings = Settings(database_url=sys.argv[1], auth_jwt_secret="x" * 48, rate_limit="off")

    async def start() -> None:
        if not settings.is_embedded:  # `allot db upgrade`, as a deployment runs it
            engine = make_engine(settings.database_url, settings)
            await upgrade(engine)
            await engine.dispose()
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            pass

    asyncio.run(start())
    """
)


async def test_processes_starting_at_once_do_not_duplicate_standard_names(
    empty_database: str,
) -> None:
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", _START, empty_database],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    for process in processes:
        _, err = process.communicate(timeout=120)
        assert process.returncode == 0, err[-2000:]
    engine = create_async_engine(empty_database)
    try:
        async with engine.connect() as conn:
            classes = (await conn.execute(text("SELECT name FROM resource_classes"))).all()
            traits = (await conn.execute(text("SELECT name FROM traits"))).all()
            versions = (await conn.execute(text("SELECT version_num FROM alembic_version"))).all()
    finally:
        await engine.dispose()
    assert sorted(n for (n,) in classes) == sorted(os_resource_classes.STANDARDS)
    assert sorted(n for (n,) in traits) == sorted(os_traits.get_traits())
    assert versions == [(head_revision(),)]
