"""`allot db check`: every inventory's kept usage count against the allocations it sums, and
the provider trees; and migration 0003, which computes the counts of an existing database."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import httpx
import pytest
from alembic import command
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.engine import Connection

from app.engines import make_engine
from app.migrations_runner import alembic_config, upgrade
from app.services.integrity import differences
from tests.allocation_helpers import body, make_provider, new_uuid
from tests.conftest import PG_URL, scratch_database
from tests.conftest import test_settings as settings_for
from tests.deployment.topology import ALLOT

BACKENDS = ["sqlite"] + (["postgresql"] if PG_URL else [])


async def _found(app: FastAPI) -> list[str]:
    async with app.state.database.engine.connect() as conn:
        return await differences(conn)


def _check_command(database_url: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALLOT_")}
    env["ALLOT_DATABASE_URL"] = database_url
    return subprocess.run([ALLOT, "db", "check"], env=env, capture_output=True, text=True)


async def test_the_counts_follow_every_write_and_a_corrupted_one_is_found(
    client: httpx.AsyncClient, app: FastAPI, database_url: str
) -> None:
    rp = await make_provider(client, {"VCPU": {"total": 16}, "MEMORY_MB": {"total": 4096}})
    other = await make_provider(client, {"VCPU": {"total": 16}})
    first, second = new_uuid(), new_uuid()
    await client.put(f"/allocations/{first}", json=body({rp: {"VCPU": 2, "MEMORY_MB": 512}}))
    await client.put(f"/allocations/{second}", json=body({rp: {"VCPU": 3}}))
    moved = body({other: {"VCPU": 1}}, generation=1)
    assert (await client.put(f"/allocations/{first}", json=moved)).status_code == 204
    assert (await client.delete(f"/allocations/{second}")).status_code == 204
    assert await _found(app) == []
    assert (await client.get(f"/resource_providers/{rp}/usages")).json()["usages"] == {
        "VCPU": 0,
        "MEMORY_MB": 0,
    }
    done = _check_command(database_url)
    assert done.returncode == 0, done.stderr
    assert "every inventory's usage equals its allocations" in done.stdout

    async with app.state.database.engine.begin() as conn:
        await conn.execute(text("UPDATE inventories SET used = used + 3 WHERE used = 1"))
    found = await _found(app)
    assert found[0] == "1 inventories whose used differs from the sum of their allocations:"
    assert found[1].startswith(f"  ('{other}', 0, 4, 1)")
    done = _check_command(database_url)
    assert done.returncode == 1
    assert f"('{other}', 0, 4, 1)" in done.stdout
    assert "the database breaks rules allot relies on" in done.stderr


def _to(revision: str) -> object:
    def run(connection: Connection) -> None:
        config = alembic_config()
        config.attributes["connection"] = connection
        command.upgrade(config, revision)

    return run


@pytest.mark.parametrize("backend", BACKENDS)
async def test_migration_0003_counts_the_allocations_already_there(
    backend: str, tmp_path: Path
) -> None:
    async with scratch_database(backend, tmp_path) as url:
        engine = make_engine(url, settings_for(url))
        try:
            async with engine.begin() as conn:
                await conn.run_sync(_to("0002"))  # type: ignore[arg-type]
            async with engine.begin() as conn:
                for sql in (
                    "INSERT INTO resource_classes (id, name, created_at) VALUES "
                    "(0, 'VCPU', CURRENT_TIMESTAMP), (1, 'MEMORY_MB', CURRENT_TIMESTAMP)",
                    "INSERT INTO resource_providers (id, uuid, name, generation, root_provider_id, "
                    "created_at) VALUES (1, 'a0000000-0000-4000-8000-000000000001', 'cn1', 0, 1, "
                    "CURRENT_TIMESTAMP)",
                    "INSERT INTO inventories (resource_provider_id, resource_class_id, total, "
                    "reserved, min_unit, max_unit, step_size, allocation_ratio, created_at) "
                    "VALUES (1, 0, 8, 0, 1, 8, 1, 1.0, CURRENT_TIMESTAMP), "
                    "(1, 1, 1024, 0, 1, 1024, 1, 1.0, CURRENT_TIMESTAMP)",
                    "INSERT INTO projects (id, external_id, created_at) "
                    "VALUES (1, 'p', CURRENT_TIMESTAMP)",
                    "INSERT INTO users (id, external_id, created_at) "
                    "VALUES (1, 'u', CURRENT_TIMESTAMP)",
                    "INSERT INTO consumers (id, uuid, project_id, user_id, generation, created_at) "
                    "VALUES (1, 'c0000000-0000-4000-8000-000000000001', 1, 1, 1, "
                    "CURRENT_TIMESTAMP), (2, 'c0000000-0000-4000-8000-000000000002', 1, 1, 1, "
                    "CURRENT_TIMESTAMP)",
                    "INSERT INTO allocations (consumer_id, resource_provider_id, "
                    "resource_class_id, used, created_at) VALUES (1, 1, 0, 2, CURRENT_TIMESTAMP), "
                    "(2, 1, 0, 3, CURRENT_TIMESTAMP)",
                ):
                    await conn.execute(text(sql))
            await upgrade(engine)
            async with engine.connect() as conn:
                counts = await conn.execute(
                    text("SELECT resource_class_id, used FROM inventories ORDER BY 1")
                )
                assert [tuple(row) for row in counts] == [(0, 5), (1, 0)]
                assert await differences(conn) == []
        finally:
            await engine.dispose()
