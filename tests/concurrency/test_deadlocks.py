"""Writers that meet on the same providers from opposite sides, through two `allot serve`
workers: nothing is refused that should be, the counts stay exact, and PostgreSQL never has
to break a deadlock (every writer locks the providers it touches, in one order, before it
changes a count or an inventory).

- Consumers moving opposite ways between two providers, round after round: a move takes its
  amounts off the provider it leaves and adds them to the one it claims on.
- Claims and releases on one provider while other clients change its inventory.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from tests.allocation_helpers import body, make_provider, new_uuid
from tests.concurrency import servers
from tests.conftest import assert_consistent, auth, mint

pytestmark = pytest.mark.slow

PORTS = range(8350, 8400)  # this suite's port range on the shared machine
PAIRS = 8  # consumers moving each way
ROUNDS = 15
CLAIMERS, CHANGERS = 8, 4
CHANGES = 25  # inventory changes per changer


@pytest.fixture
async def own_postgres() -> AsyncIterator[str]:
    async with servers.own_postgres("deadlocks") as url:
        yield url


async def _deadlocks(database_url: str) -> int:
    url = make_url(database_url)
    engine = create_async_engine(url.set(database="postgres"))
    try:
        async with engine.connect() as conn:
            found = await conn.scalar(
                text("SELECT deadlocks FROM pg_stat_database WHERE datname = :name"),
                {"name": url.database},
            )
            return int(found or 0)
    finally:
        await engine.dispose()


async def _move_back_and_forth(base: str) -> list[int]:
    token = mint(roles=["admin"], project="admin-project")
    headers = {**auth(token), "openstack-api-version": "placement latest"}
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=60) as client:
        left = await make_provider(client, {"VCPU": {"total": 4 * PAIRS}})
        right = await make_provider(client, {"VCPU": {"total": 4 * PAIRS}})
        starts = [left] * PAIRS + [right] * PAIRS
        consumers = [new_uuid() for _ in starts]
        for consumer, start in zip(consumers, starts, strict=True):
            put = await client.put(f"/allocations/{consumer}", json=body({start: {"VCPU": 1}}))
            assert put.status_code == 204, put.text

        async def mover(consumer: str, start: str) -> list[int]:
            statuses, here = [], start
            for generation in range(1, ROUNDS + 1):
                there = right if here == left else left
                moved = await client.put(
                    f"/allocations/{consumer}",
                    json=body({there: {"VCPU": 1}}, generation=generation),
                )
                statuses.append(moved.status_code)
                here = there
            return statuses

        runs = await asyncio.gather(*map(mover, consumers, starts))
        for rp in (left, right):
            usages = await client.get(f"/resource_providers/{rp}/usages")
            # An odd number of rounds: every consumer ends where the other half began.
            assert usages.json()["usages"] == {"VCPU": PAIRS}
    return [status for run in runs for status in run]


async def _claims_beside_inventory_changes(base: str) -> tuple[list[int], list[int]]:
    token = mint(roles=["admin"], project="admin-project")
    headers = {**auth(token), "openstack-api-version": "placement latest"}
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=60) as client:
        rp = await make_provider(client, {"VCPU": {"total": 64}})
        changing = asyncio.Event()

        async def claimer() -> list[int]:
            statuses = []
            while not changing.is_set():
                consumer = new_uuid()
                put = await client.put(f"/allocations/{consumer}", json=body({rp: {"VCPU": 1}}))
                statuses.append(put.status_code)
                statuses.append((await client.delete(f"/allocations/{consumer}")).status_code)
            return statuses

        async def changer(index: int) -> list[int]:
            statuses = []
            for change in range(CHANGES):
                generation = (await client.get(f"/resource_providers/{rp}")).json()["generation"]
                put = await client.put(
                    f"/resource_providers/{rp}/inventories/VCPU",
                    json={"resource_provider_generation": generation, "total": 64 + change % 2},
                )
                if put.status_code == 409:
                    assert put.json()["errors"][0]["code"] == "placement.concurrent_update"
                statuses.append(put.status_code)
            return statuses

        claims = [asyncio.create_task(claimer()) for _ in range(CLAIMERS)]
        changes = await asyncio.gather(*map(changer, range(CHANGERS)))
        changing.set()
        claimed = await asyncio.gather(*claims)
        usages = (await client.get(f"/resource_providers/{rp}/usages")).json()["usages"]
        assert usages == {"VCPU": 0}
    return [s for run in claimed for s in run], [s for run in changes for s in run]


async def _deadlocks_while(database_url: str, run: Callable[[str], Awaitable[None]]) -> int:
    """PostgreSQL's deadlocks in `database_url` while `run` loads a server on it."""
    before = await _deadlocks(database_url)
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "serve.log"
        with servers.allot_serve(database_url, workers=2, log=log, ports=PORTS) as base:
            await run(base)
    # The server has stopped: its connections have closed and reported their statistics.
    for _ in range(50):  # the statistics collector may take a moment to add them up
        if await _deadlocks(database_url) != before:
            break
        await asyncio.sleep(0.02)
    return await _deadlocks(database_url) - before


async def _crossing_moves(base: str) -> None:
    assert set(await _move_back_and_forth(base)) == {204}


async def _claims_and_changes(base: str) -> None:
    claimed, changed = await _claims_beside_inventory_changes(base)
    assert set(claimed) == {204}
    # A change loses only to a write that moved the generation since it read it (with claims
    # and releases bumping it all the time, most do).
    assert set(changed) <= {200, 409}


async def test_crossing_moves_on_postgresql_never_deadlock(own_postgres: str) -> None:
    assert await _deadlocks_while(own_postgres, _crossing_moves) == 0
    await assert_consistent(own_postgres)


async def test_claims_beside_inventory_changes_on_postgresql_never_deadlock(
    own_postgres: str,
) -> None:
    assert await _deadlocks_while(own_postgres, _claims_and_changes) == 0
    await assert_consistent(own_postgres)


@pytest.mark.parametrize("scenario", [_crossing_moves, _claims_and_changes])
async def test_the_same_on_sqlite(scenario: Callable[[str], Awaitable[None]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        database_url = f"sqlite+aiosqlite:///{Path(tmp) / 'deadlocks.db'}"
        log = Path(tmp) / "serve.log"
        with servers.allot_serve(database_url, workers=2, log=log, ports=PORTS) as base:
            await scenario(base)
        await assert_consistent(database_url)
