"""Consumers moving between providers at the same time, through two `allot serve` workers.

A move takes its amounts off the provider it leaves and adds them to the one it claims on.
Half the consumers move one way while the other half move the other way, round after round:
every move is accepted, the counts stay exact, and PostgreSQL never has to break a deadlock
(each writer locks both providers, in one order, before it changes a count).
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import AsyncIterator
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


@pytest.fixture
async def own_postgres() -> AsyncIterator[str]:
    async with servers.own_postgres("moves") as url:
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


async def test_crossing_moves_on_postgresql_never_deadlock(own_postgres: str) -> None:
    before = await _deadlocks(own_postgres)
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "serve.log"
        with servers.allot_serve(own_postgres, workers=2, log=log, ports=PORTS) as base:
            statuses = await _move_back_and_forth(base)
    # The server has stopped: its connections have closed and reported their statistics.
    assert set(statuses) == {204}
    await assert_consistent(own_postgres)
    for _ in range(50):  # the statistics collector may take a moment to add them up
        if await _deadlocks(own_postgres) != before:
            break
        await asyncio.sleep(0.02)
    assert await _deadlocks(own_postgres) == before


async def test_crossing_moves_on_sqlite() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        database_url = f"sqlite+aiosqlite:///{Path(tmp) / 'moves.db'}"
        log = Path(tmp) / "serve.log"
        with servers.allot_serve(database_url, workers=2, log=log, ports=PORTS) as base:
            statuses = await _move_back_and_forth(base)
        assert set(statuses) == {204}
        await assert_consistent(database_url)
