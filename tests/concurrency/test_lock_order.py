"""Lock order on PostgreSQL: a claim takes its consumer before its providers.

The usual claim creates its consumer and locks its providers in one statement, the lock
gated on the consumer being created. A claim whose consumer exists already is refused (409)
without ever waiting on a provider's lock; one that creates its consumer does wait for it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from app.main import create_app
from tests.allocation_helpers import body, make_provider, new_uuid
from tests.concurrency import servers
from tests.conftest import auth, make_client, mint
from tests.conftest import test_settings as settings_for

# A failure guard only: each awaited answer comes in milliseconds when the code is right.
GUARD_S = 30


@pytest.fixture
async def served() -> AsyncIterator[tuple[FastAPI, str]]:
    async with servers.own_postgres("lock_order") as url:
        application = create_app(settings_for(url))
        async with application.router.lifespan_context(application):
            yield application, url


async def _waiting_on_a_lock(conn: AsyncConnection, database: str) -> bool:
    waiting = await conn.scalar(
        text(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = :db AND wait_event_type = 'Lock'"
        ),
        {"db": database},
    )
    return bool(waiting)


async def _until_something_waits(engine: AsyncEngine, what: str) -> None:
    async with engine.connect() as observer:
        for _ in range(GUARD_S * 20):
            if await _waiting_on_a_lock(observer, engine.url.database or ""):
                return
            await asyncio.sleep(0.05)
    pytest.fail(f"{what} never waited for the lock")


async def test_a_claim_takes_its_consumer_before_its_providers(
    served: tuple[FastAPI, str],
) -> None:
    application, url = served
    token = mint(roles=["admin"], project="admin-project")
    headers = {**auth(token), "openstack-api-version": "placement latest"}
    engine = create_async_engine(url)
    async with make_client(application, headers) as client, engine.connect() as holder:
        rp = await make_provider(client, {"VCPU": {"total": 8}})
        known = new_uuid()
        assert (
            await client.put(f"/allocations/{known}", json=body({rp: {"VCPU": 1}}))
        ).status_code == 204

        # Another transaction holds the provider's row.
        await holder.execute(
            text("SELECT id FROM resource_providers WHERE uuid = :rp FOR UPDATE"), {"rp": rp}
        )

        # Claiming an existing consumer "as new" is refused without touching the provider.
        again = client.put(f"/allocations/{known}", json=body({rp: {"VCPU": 2}}))
        refused = await asyncio.wait_for(again, GUARD_S)
        assert refused.status_code == 409
        assert refused.json()["errors"][0]["code"] == "placement.concurrent_update"

        # A new consumer's claim needs the provider: it waits for the lock ...
        claim = asyncio.create_task(
            client.put(f"/allocations/{new_uuid()}", json=body({rp: {"VCPU": 1}}))
        )
        await _until_something_waits(engine, "the new consumer's claim")
        assert not claim.done()
        # ... and goes through once it is released.
        await holder.rollback()
        assert (await asyncio.wait_for(claim, GUARD_S)).status_code == 204
    await engine.dispose()


async def test_a_move_locks_the_provider_it_leaves_without_bumping_it(
    served: tuple[FastAPI, str],
) -> None:
    # Two consumers moving opposite ways between two providers each lower a count on the
    # provider the other is claiming on: both lock both providers, in the same order, first.
    application, url = served
    token = mint(roles=["admin"], project="admin-project")
    headers = {**auth(token), "openstack-api-version": "placement latest"}
    engine = create_async_engine(url)
    async with make_client(application, headers) as client, engine.connect() as holder:
        left = await make_provider(client, {"VCPU": {"total": 8}})
        right = await make_provider(client, {"VCPU": {"total": 8}})
        consumer = new_uuid()
        put = await client.put(f"/allocations/{consumer}", json=body({left: {"VCPU": 2}}))
        assert put.status_code == 204
        before = (await client.get(f"/resource_providers/{left}")).json()["generation"]

        await holder.execute(
            text("SELECT id FROM resource_providers WHERE uuid = :rp FOR UPDATE"), {"rp": left}
        )
        move = asyncio.create_task(
            client.put(f"/allocations/{consumer}", json=body({right: {"VCPU": 2}}, generation=1))
        )
        await _until_something_waits(engine, "the move")
        assert not move.done()
        await holder.rollback()
        assert (await asyncio.wait_for(move, GUARD_S)).status_code == 204

        usages = (await client.get(f"/resource_providers/{left}/usages")).json()["usages"]
        assert usages == {"VCPU": 0}
        after = (await client.get(f"/resource_providers/{left}")).json()["generation"]
        assert after == before
    await engine.dispose()
