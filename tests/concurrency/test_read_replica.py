"""A hot standby serving the reads that may be stale (lists, allocation candidates), while it
is fresh enough; the primary serving them otherwise, with no 5xx when the standby goes away.

The test runs its own primary and streaming standby (tests.pg_cluster), not the machine's
server: replay is paused and the standby stopped as the tests need.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import event

from app.engines import make_engine
from app.main import create_app
from app.migrations_runner import upgrade
from tests.conftest import PG_URL, make_client, mint
from tests.conftest import test_settings as settings_for
from tests.deployment.topology import free_port
from tests.pg_cluster import Server, execute, primary_and_standby

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not PG_URL, reason="PostgreSQL's binaries come with its server (CI)"),
]

MAX_LAG_MS = 300


@dataclass
class Replicated:
    app: FastAPI
    client: httpx.AsyncClient
    primary: Server
    standby: Server


@pytest.fixture(scope="module")
async def replicated() -> AsyncIterator[Replicated]:
    with primary_and_standby((free_port(), free_port())) as (primary, standby):
        engine = make_engine(primary.url, settings_for(primary.url))
        await upgrade(engine)
        await engine.dispose()
        app = create_app(
            settings_for(
                primary.url,
                database_read_url=standby.url,
                database_read_max_lag_ms=MAX_LAG_MS,
            )
        )
        headers = {
            "authorization": f"Bearer {mint(roles=['admin'], project='replica-project')}",
            "openstack-api-version": "placement latest",
        }
        async with app.router.lifespan_context(app), make_client(app, headers) as client:
            yield Replicated(app, client, primary, standby)


@contextmanager
def reads_on_the_replica(app: FastAPI) -> Iterator[list[str]]:
    """The statements requests run on the replica meanwhile (the lag checks left out)."""
    seen: list[str] = []

    def note(_conn: object, _cursor: object, sql: str, *_: object) -> None:
        if "pg_last_wal_replay_lsn" not in sql:
            seen.append(sql)

    engine = app.state.database.read_engine.sync_engine
    event.listen(engine, "before_cursor_execute", note)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", note)


async def _fresh(app: FastAPI) -> None:
    for _ in range(100):
        if app.state.database.replica.fresh:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the replica never caught up")


async def _provider(client: httpx.AsyncClient) -> str:
    rp = str(uuid.uuid4())
    created = await client.post("/resource_providers", json={"name": rp, "uuid": rp})
    assert created.status_code == 200, created.text
    inventory = {"resource_provider_generation": 0, "inventories": {"VCPU": {"total": 8}}}
    put = await client.put(f"/resource_providers/{rp}/inventories", json=inventory)
    assert put.status_code == 200, put.text
    return rp


def _listed(response: httpx.Response) -> set[str]:
    assert response.status_code == 200, response.text
    return {p["uuid"] for p in response.json()["resource_providers"]}


async def test_lists_and_candidates_come_from_a_fresh_replica(replicated: Replicated) -> None:
    r = replicated
    rp = await _provider(r.client)
    await _fresh(r.app)
    with reads_on_the_replica(r.app) as seen:
        assert rp in _listed(await r.client.get("/resource_providers"))
        candidates = await r.client.get("/allocation_candidates?resources=VCPU:1")
        assert rp in candidates.json()["provider_summaries"]
        assert (await r.client.get("/traits")).status_code == 200
    assert len(seen) >= 3
    # What a client reads to decide a write (a provider's generation) comes from the primary.
    with reads_on_the_replica(r.app) as seen:
        assert (await r.client.get(f"/resource_providers/{rp}")).json()["generation"] == 1
        assert (await r.client.get(f"/resource_providers/{rp}/inventories")).status_code == 200
    assert seen == []


async def test_a_replica_further_behind_than_the_bound_is_not_read(
    replicated: Replicated,
) -> None:
    r = replicated
    await _fresh(r.app)
    await execute(r.standby, "SELECT pg_wal_replay_pause()")
    try:
        rp = await _provider(r.client)  # written on the primary, not replayed on the standby
        await asyncio.sleep(2 * MAX_LAG_MS / 1000)
        assert not r.app.state.database.replica.fresh
        with reads_on_the_replica(r.app) as seen:
            assert rp in _listed(await r.client.get("/resource_providers"))
        assert seen == []
    finally:
        await execute(r.standby, "SELECT pg_wal_replay_resume()")
    await _fresh(r.app)
    with reads_on_the_replica(r.app) as seen:
        assert rp in _listed(await r.client.get("/resource_providers"))
    assert seen


async def test_a_standby_stopped_under_load_costs_no_5xx(replicated: Replicated) -> None:
    r = replicated
    await _fresh(r.app)
    statuses: list[int] = []
    stop = asyncio.Event()

    async def reader() -> None:
        while not stop.is_set():
            for path in ("/resource_providers", "/allocation_candidates?resources=VCPU:1"):
                statuses.append((await r.client.get(path)).status_code)

    readers = [asyncio.create_task(reader()) for _ in range(8)]
    await asyncio.sleep(0.5)
    before = len(statuses)
    await asyncio.to_thread(r.standby.stop, "fast")
    await asyncio.sleep(1.0)
    stop.set()
    await asyncio.gather(*readers)
    assert before > 0 and len(statuses) > before
    assert set(statuses) == {200}, sorted(set(statuses))
    assert not r.app.state.database.replica.fresh
