"""Concurrent claims against real server processes: capacity is never exceeded and what was
accepted is exactly what is stored.

A bounded burst (400 claims from 32 concurrent clients, some spanning two providers in
either order, some released again) hits a few small providers through `allot serve`: two
worker processes on PostgreSQL (a database of its own), one process on SQLite. Afterwards
the database and the API must agree with the clients' own record of what was accepted.
Throughput and the 409 rate are printed as figures, never asserted.
"""

from __future__ import annotations

import asyncio
import random
import tempfile
import time
import uuid as uuidlib
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import create_async_engine

from app.models import Allocation, Consumer, ResourceClass, ResourceProvider
from tests.concurrency import servers
from tests.concurrency.servers import allot_serve
from tests.conftest import assert_consistent, auth, mint

pytestmark = pytest.mark.slow

PORTS = range(8200, 8300)  # this suite's port range on the shared machine
CLAIMS = 400
CLIENTS = 32
PROVIDERS = 4
CAPACITY = 10  # VCPU per provider
PROJECT = "claims-project"
RELEASE_CHANCE = 0.3  # after an accepted claim, a client sometimes releases one of its own


@dataclass
class Claim:
    consumer: str
    allocations: dict[str, dict[str, int]]


@dataclass
class Outcome:
    statuses: Counter[int] = field(default_factory=Counter)
    codes: Counter[str] = field(default_factory=Counter)
    live: dict[str, Claim] = field(default_factory=dict)
    accepted: int = 0
    released: int = 0
    seconds: float = 0.0


def _claims(providers: list[str], seed: int) -> list[Claim]:
    rng = random.Random(seed)
    claims = []
    for _ in range(CLAIMS):
        # A third span two providers, named in random order: ordered locking must cope.
        chosen = rng.sample(providers, 2 if rng.random() < 1 / 3 else 1)
        claims.append(
            Claim(str(uuidlib.uuid4()), {rp: {"VCPU": rng.choice((1, 2))} for rp in chosen})
        )
    return claims


def _put_body(claim: Claim) -> dict[str, Any]:
    return {
        "allocations": {rp: {"resources": res} for rp, res in claim.allocations.items()},
        "project_id": PROJECT,
        "user_id": "claims-user",
        "consumer_generation": None,
        "consumer_type": "INSTANCE",
    }


async def _burst(base: str, headers: dict[str, str], claims: list[Claim]) -> Outcome:
    outcome = Outcome()
    queue: asyncio.Queue[Claim] = asyncio.Queue()
    for claim in claims:
        queue.put_nowait(claim)

    def record(response: httpx.Response) -> None:
        outcome.statuses[response.status_code] += 1
        if response.status_code >= 400:
            outcome.codes[response.json()["errors"][0]["code"]] += 1

    async def client_loop(index: int) -> None:
        rng = random.Random(index)
        mine: list[Claim] = []
        async with httpx.AsyncClient(base_url=base, headers=headers, timeout=120) as http:
            while not queue.empty():
                claim = queue.get_nowait()
                response = await http.put(f"/allocations/{claim.consumer}", json=_put_body(claim))
                record(response)
                if response.status_code == 204:
                    outcome.accepted += 1
                    outcome.live[claim.consumer] = claim
                    mine.append(claim)
                if mine and rng.random() < RELEASE_CHANCE:
                    gone = mine.pop(rng.randrange(len(mine)))
                    released = await http.delete(f"/allocations/{gone.consumer}")
                    record(released)
                    if released.status_code == 204:
                        outcome.released += 1
                        del outcome.live[gone.consumer]

    started = time.perf_counter()
    await asyncio.gather(*(client_loop(i) for i in range(CLIENTS)))
    outcome.seconds = time.perf_counter() - started
    return outcome


async def _setup(http: httpx.AsyncClient) -> list[str]:
    providers = []
    for index in range(PROVIDERS):
        rp = str(uuidlib.uuid4())
        created = await http.post(
            "/resource_providers", json={"name": f"claims-{index}", "uuid": rp}
        )
        assert created.status_code == 200, created.text
        inventory = {"VCPU": {"total": CAPACITY, "max_unit": CAPACITY}}
        put = await http.put(
            f"/resource_providers/{rp}/inventories",
            json={"resource_provider_generation": 0, "inventories": inventory},
        )
        assert put.status_code == 200, put.text
        providers.append(rp)
    return providers


async def _stored(database_url: str) -> dict[str, dict[str, dict[str, int]]]:
    """consumer -> provider -> class -> amount, straight from the database."""
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(
                select(Consumer.uuid, ResourceProvider.uuid, ResourceClass.name, Allocation.used)
                .join(Consumer, Consumer.id == Allocation.consumer_id)
                .join(ResourceProvider, ResourceProvider.id == Allocation.resource_provider_id)
                .join(ResourceClass, ResourceClass.id == Allocation.resource_class_id)
            )
            stored: dict[str, dict[str, dict[str, int]]] = defaultdict(lambda: defaultdict(dict))
            for consumer, rp, rc, used in rows.all():
                stored[consumer][rp][rc] = used
            consumers = await conn.scalar(text("SELECT count(*) FROM consumers"))
    finally:
        await engine.dispose()
    assert consumers == len(stored), "a consumer without allocations was left behind"
    return {c: {rp: dict(res) for rp, res in by_rp.items()} for c, by_rp in stored.items()}


async def _claims_hold(base: str, database_url: str, label: str, seed: int) -> None:
    headers = {
        **auth(mint(roles=["admin"], project="admin")),
        "openstack-api-version": "placement 1.38",
    }
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=60) as http:
        providers = await _setup(http)
        outcome = await _burst(base, headers, _claims(providers, seed))

        # Every answer was a decision: done, or refused with 409. Never a 5xx.
        assert set(outcome.statuses) <= {200, 204, 409}, outcome.statuses
        # What the clients were told they hold is exactly what is stored.
        stored = await _stored(database_url)
        assert stored == {c: claim.allocations for c, claim in outcome.live.items()}
        expected: Counter[str] = Counter()
        for claim in outcome.live.values():
            for rp, resources in claim.allocations.items():
                expected[rp] += resources["VCPU"]
        for rp in providers:
            usage = (await http.get(f"/resource_providers/{rp}/usages")).json()["usages"]
            assert usage == {"VCPU": expected[rp]}
            assert usage["VCPU"] <= CAPACITY
        await assert_consistent(database_url)
        totals = (await http.get(f"/usages?project_id={PROJECT}&consumer_type=all")).json()
        total = sum(expected.values())
        assert totals["usages"] == (
            {"all": {"VCPU": total, "consumer_count": len(outcome.live)}} if total else {}
        )

    refused = outcome.statuses[409]
    print(
        f"\n[claims/{label}] {CLAIMS} claims from {CLIENTS} clients in {outcome.seconds:.2f}s: "
        f"{outcome.accepted} accepted ({outcome.accepted / outcome.seconds:.1f}/s), "
        f"{outcome.released} released, 409 rate {refused / CLAIMS:.1%} "
        f"(codes: {dict(outcome.codes)}), live at the end: {len(outcome.live)}"
    )


@pytest.fixture
async def claims_postgres() -> AsyncIterator[str]:
    async with servers.own_postgres("claims") as url:
        yield url


async def test_claims_on_postgresql_with_two_workers(
    claims_postgres: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with (
        tempfile.TemporaryDirectory() as tmp,
        allot_serve(claims_postgres, workers=2, log=Path(tmp) / "serve.log", ports=PORTS) as base,
    ):
        await _claims_hold(base, claims_postgres, "postgresql, 2 workers", seed=1)
    with capsys.disabled():
        print(capsys.readouterr().out, end="")


async def test_claims_through_pgbouncer_in_transaction_mode(
    claims_postgres: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two workers of 8 connections each share PgBouncer's 6 server connections: every
    transaction may land on a server connection another client used a moment ago."""
    with (
        tempfile.TemporaryDirectory() as tmp,
        servers.pgbouncer(claims_postgres, workdir=Path(tmp), ports=PORTS) as pooled,
        allot_serve(
            pooled,
            workers=2,
            log=Path(tmp) / "serve.log",
            ports=PORTS,
            settings={"ALLOT_DATABASE_TRANSACTION_POOLER": "true"},
        ) as base,
    ):
        await _claims_hold(base, claims_postgres, "postgresql via pgbouncer, 2 workers", seed=3)
    with capsys.disabled():
        print(capsys.readouterr().out, end="")


async def test_claims_on_sqlite_with_one_process(capsys: pytest.CaptureFixture[str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        database_url = f"sqlite+aiosqlite:///{Path(tmp) / 'claims.db'}"
        with allot_serve(database_url, workers=1, log=Path(tmp) / "serve.log", ports=PORTS) as base:
            await _claims_hold(base, database_url, "sqlite, 1 process", seed=2)
    with capsys.disabled():
        print(capsys.readouterr().out, end="")
