"""The production topology, started natively, keeps its promises with several processes.

`allot db upgrade` (the one-shot migration job), then two `allot serve --workers 2` on
different ports against one PostgreSQL (through a TCP proxy the tests can cut) and one Redis,
as docker-compose.yml runs them. Needs PostgreSQL (ALLOT_TEST_DATABASE_URL); CI always has it.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlalchemy.engine import make_url

from tests.conftest import MINTED_TOKENS, PG_URL, TEST_SECRET, mint
from tests.deployment.topology import (
    Process,
    Redis,
    TcpProxy,
    free_port,
    migrate,
    own_database,
    with_host_port,
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not PG_URL, reason="needs PostgreSQL: set ALLOT_TEST_DATABASE_URL"),
]

# Per subject, shared by every process through Redis.
RATE_LIMIT = 40
LATEST = {"openstack-api-version": "placement latest"}


@dataclass
class Topology:
    servers: list[Process]
    proxy: TcpProxy
    redis: Redis
    database_url: str
    env: dict[str, str]
    workdir: Path


def _base_env() -> dict[str, str]:
    # Nothing from the developer's own allot configuration leaks into the processes.
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("ALLOT_") and k != "PROMETHEUS_MULTIPROC_DIR"
    }


@pytest.fixture(scope="module")
def topology(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Topology]:
    workdir = tmp_path_factory.mktemp("topology")
    assert PG_URL
    with own_database(PG_URL, "topology") as database_url:
        pg = make_url(database_url)
        proxy = TcpProxy(pg.host or "127.0.0.1", pg.port or 5432)
        redis = Redis(workdir)
        env = {
            **_base_env(),
            "ALLOT_ENV": "production",
            "ALLOT_DATABASE_URL": with_host_port(database_url, "127.0.0.1", proxy.port),
            "ALLOT_DATABASE_POOL_SIZE": "5",
            "ALLOT_DATABASE_POOL_TIMEOUT": "5",
            "ALLOT_AUTH_JWT_SECRET": TEST_SECRET,
            "ALLOT_RATE_LIMIT": f"{RATE_LIMIT}/minute",
            "ALLOT_RATE_LIMIT_ANON": "6000/minute",
            "ALLOT_RATE_LIMIT_STORAGE": redis.url,
            "ALLOT_LOG_LEVEL": "INFO",
        }
        migrate({**env, "ALLOT_DATABASE_URL": database_url})
        servers = [Process(n, free_port(), env, workdir / f"{n}.log") for n in ("a", "b")]
        topo = Topology(servers, proxy, redis, database_url, env, workdir)
        try:
            for server in servers:
                server.launch()
            for server in servers:
                server.wait_ready()
            yield topo
        finally:
            for server in servers:
                server.stop()
            redis.stop()
            proxy.close()
        logs = "".join(s.log_text() for s in servers)
        leaked = [t for t in MINTED_TOKENS if t in logs]
        assert not leaked, "a bearer token reached the service log"


def _headers(token: str) -> dict[str, str]:
    return {**LATEST, "x-auth-token": token}


def _fresh_connections() -> httpx.AsyncClient:
    # A new TCP connection per request, so the kernel hands requests to every worker.
    return httpx.AsyncClient(limits=httpx.Limits(max_keepalive_connections=0), timeout=30)


def _worker_pids(server: Process) -> set[int]:
    assert server.popen is not None
    pid = server.popen.pid
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return {int(c) for c in children}


async def test_rate_limits_are_shared_by_every_process(topology: Topology) -> None:
    token = mint(roles=["admin"], project="ops", user="rate-limited-operator")
    answers: list[tuple[str, httpx.Response]] = []
    async with _fresh_connections() as client:
        for i in range(RATE_LIMIT + 20):
            server = topology.servers[i % 2]
            response = await client.get(
                f"{server.url}/resource_classes/VCPU", headers=_headers(token)
            )
            answers.append((server.name, response))
    accepted = [name for name, r in answers if r.status_code == 200]
    refused = [(name, r) for name, r in answers if r.status_code == 429]
    # In-process counters would have let every process accept RATE_LIMIT on its own.
    assert len(accepted) == RATE_LIMIT
    assert len(refused) == 20
    assert {name for name, _ in refused} == {"a", "b"}
    body = refused[0][1].json()["errors"][0]
    assert body["code"] == "allot.rate_limited"
    assert int(refused[0][1].headers["retry-after"]) >= 1

    # Another subject is not affected by the first one's exhaustion.
    other = mint(roles=["admin"], project="ops", user="another-operator")
    async with _fresh_connections() as client:
        response = await client.get(
            f"{topology.servers[1].url}/resource_classes/VCPU", headers=_headers(other)
        )
    assert response.status_code == 200


async def test_metrics_cover_every_worker_of_a_process(topology: Topology) -> None:
    server = topology.servers[0]
    async with _fresh_connections() as client:
        before = await _healthz_count(client, server)
        for _ in range(30):
            assert (await client.get(f"{server.url}/healthz")).status_code == 200
        after = await _healthz_count(client, server)
    # Whichever worker answers /metrics reports the requests every worker served.
    assert after - before == 30 + 1  # the first /metrics scrape is counted too


async def _healthz_count(client: httpx.AsyncClient, server: Process) -> float:
    operator = mint(roles=["admin"], project="ops", user="metrics-scraper")
    text = (await client.get(f"{server.url}/metrics", headers=_headers(operator))).text
    total = 0.0
    for line in text.splitlines():
        if line.startswith("allot_requests_total{") and 'route="/healthz"' in line:
            total += float(line.rsplit(" ", 1)[1])
    for line in text.splitlines():
        if line.startswith("allot_requests_total{") and 'route="/metrics"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


async def test_readiness_follows_the_database_without_a_restart(topology: Topology) -> None:
    token = mint(roles=["admin"], project="ops", user="readiness-operator")
    workers_before = {s.name: _worker_pids(s) for s in topology.servers}
    async with _fresh_connections() as client:
        for server in topology.servers:
            assert (await client.get(f"{server.url}/readyz")).status_code == 200

        topology.proxy.cut()
        try:
            for server in topology.servers:
                await _eventually_status(client, f"{server.url}/readyz", 503)
                # The process itself stays up: liveness must not restart it for a DB outage.
                assert (await client.get(f"{server.url}/healthz")).status_code == 200
                response = await client.get(
                    f"{server.url}/resource_providers", headers=_headers(token)
                )
                assert response.status_code == 503
                assert response.json()["errors"][0]["code"] == "allot.unavailable"
                assert "retry-after" in response.headers
        finally:
            topology.proxy.restore()

        for server in topology.servers:
            await _eventually_status(client, f"{server.url}/readyz", 200)
            response = await client.get(f"{server.url}/resource_providers", headers=_headers(token))
            assert response.status_code == 200
    assert {s.name: _worker_pids(s) for s in topology.servers} == workers_before


async def _eventually_status(client: httpx.AsyncClient, url: str, status: int) -> None:
    last = None
    for _ in range(300):
        last = (await client.get(url)).status_code
        if last == status:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{url} stayed {last}, expected {status}")


# --- claims across processes ----------------------------------------------------------------

CLAIM = {"VCPU": 1, "MEMORY_MB": 256}


async def _provider(
    client: httpx.AsyncClient, server: Process, token: str, name: str, inventories: dict[str, int]
) -> str:
    created = await client.post(
        f"{server.url}/resource_providers", json={"name": name}, headers=_headers(token)
    )
    assert created.status_code == 200, created.text
    provider: str = created.json()["uuid"]
    response = await client.put(
        f"{server.url}/resource_providers/{provider}/inventories",
        json={
            "resource_provider_generation": 0,
            "inventories": {rc: {"total": total} for rc, total in inventories.items()},
        },
        headers=_headers(token),
    )
    assert response.status_code == 200, response.text
    return provider


def _claim_body(cpu: str, memory: str, user: str) -> dict[str, object]:
    return {
        "allocations": {
            cpu: {"resources": {"VCPU": CLAIM["VCPU"]}},
            memory: {"resources": {"MEMORY_MB": CLAIM["MEMORY_MB"]}},
        },
        "consumer_generation": None,
        "project_id": "claims-project",
        "user_id": user,
        "consumer_type": "INSTANCE",
    }


async def _database_state(database_url: str, providers: list[str]) -> dict[str, object]:
    """What PostgreSQL itself holds, read directly (not through allot)."""
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as conn:
            usage = await conn.execute(
                text(
                    "SELECT rp.uuid, rc.name, SUM(a.used) FROM allocations a "
                    "JOIN resource_providers rp ON rp.id = a.resource_provider_id "
                    "JOIN resource_classes rc ON rc.id = a.resource_class_id "
                    "WHERE rp.uuid = ANY(:providers) GROUP BY rp.uuid, rc.name"
                ),
                {"providers": providers},
            )
            rows = await conn.execute(
                text(
                    "SELECT c.uuid, COUNT(a.id) FROM consumers c "
                    "LEFT JOIN allocations a ON a.consumer_id = c.id GROUP BY c.uuid"
                )
            )
            return {
                "usage": {(p, rc): int(total) for p, rc, total in usage},
                "allocation_rows": {c: int(n) for c, n in rows},
            }
    finally:
        await engine.dispose()


async def _reported_usage(client: httpx.AsyncClient, server: Process, token: str, rp: str) -> dict:
    response = await client.get(
        f"{server.url}/resource_providers/{rp}/usages", headers=_headers(token)
    )
    assert response.status_code == 200
    usages: dict[str, int] = response.json()["usages"]
    return usages


async def test_concurrent_claims_over_both_processes_never_over_allocate(
    topology: Topology,
) -> None:
    capacity = 40
    admin = mint(roles=["admin"], project="ops", user="claims-setup")
    async with _fresh_connections() as client:
        cpu = await _provider(client, topology.servers[0], admin, "claims-cpu", {"VCPU": capacity})
        memory = await _provider(
            client, topology.servers[1], admin, "claims-mem", {"MEMORY_MB": 256 * 50}
        )

    outcomes: list[tuple[str, int, str]] = []

    async def claimant(n: int) -> None:
        # Each client its own subject (as many compute services would be), well under its limit.
        user = f"claimant-{n}"
        token = mint(roles=["admin"], project="claims-project", user=user)
        async with _fresh_connections() as client:
            for attempt in range(20):
                server = topology.servers[(n + attempt) % 2]
                consumer = str(uuid.uuid4())
                response = await client.put(
                    f"{server.url}/allocations/{consumer}",
                    json=_claim_body(cpu, memory, user),
                    headers=_headers(token),
                )
                code = "" if response.status_code == 204 else response.json()["errors"][0]["code"]
                outcomes.append((server.name, response.status_code, code))
                if code == "placement.undefined_code":  # no capacity left: stop, as Nova would
                    return

    await asyncio.gather(*(claimant(n) for n in range(16)))

    assert {status for _, status, _ in outcomes} <= {204, 409}, "no 5xx, nothing else"
    accepted = [name for name, status, _ in outcomes if status == 204]
    assert {"a", "b"} <= set(accepted), "both processes accepted claims"
    # Every client stopped only when told the provider was full: it is exactly full.
    assert len(accepted) == capacity
    state = await _database_state(topology.database_url, [cpu, memory])
    assert state["usage"] == {
        (cpu, "VCPU"): capacity * CLAIM["VCPU"],
        (memory, "MEMORY_MB"): capacity * CLAIM["MEMORY_MB"],
    }
    async with _fresh_connections() as client:
        for server in topology.servers:
            assert await _reported_usage(client, server, admin, cpu) == {"VCPU": capacity}


async def test_sigterm_during_load_leaves_nothing_partial(topology: Topology) -> None:
    admin = mint(roles=["admin"], project="ops", user="sigterm-setup")
    async with _fresh_connections() as client:
        first = topology.servers[0]
        cpu = await _provider(client, first, admin, "sigterm-cpu", {"VCPU": 100_000})
        memory = await _provider(client, first, admin, "sigterm-mem", {"MEMORY_MB": 10_000_000})

    # The last test of the module: it stops process b for good; a carries on.
    server = topology.servers[1]
    outcomes: dict[str, str] = {}  # consumer -> "204" | "409 <code>" | "unknown"
    after_signal: list[int] = []
    signalled = asyncio.Event()
    enough_load = asyncio.Event()

    async def claimant(n: int) -> None:
        user = f"sigterm-claimant-{n}"
        token = mint(roles=["admin"], project="claims-project", user=user)
        async with _fresh_connections() as client:
            for _ in range(RATE_LIMIT - 5):
                consumer = str(uuid.uuid4())
                was_signalled = signalled.is_set()
                try:
                    response = await client.put(
                        f"{server.url}/allocations/{consumer}",
                        json=_claim_body(cpu, memory, user),
                        headers=_headers(token),
                    )
                except httpx.TransportError:
                    outcomes[consumer] = "unknown"  # refused or cut: the outcome is unknown
                    if signalled.is_set():
                        return
                    continue
                outcomes[consumer] = str(response.status_code)
                if signalled.is_set() and not was_signalled:
                    after_signal.append(response.status_code)  # in flight at the signal
                if len(outcomes) >= 60:
                    enough_load.set()

    clients = asyncio.gather(*(claimant(n) for n in range(24)))
    await asyncio.wait_for(enough_load.wait(), timeout=120)
    signalled.set()
    exit_code = await asyncio.to_thread(server.terminate)
    await clients

    assert exit_code == 0, server.log_text()[-3000:]
    assert set(outcomes.values()) <= {"204", "409", "unknown"}, "in-flight work never 5xx"
    assert after_signal and set(after_signal) <= {204, 409}, "requests in flight finished"
    state = await _database_state(topology.database_url, [cpu, memory])
    rows: dict[str, int] = state["allocation_rows"]  # type: ignore[assignment]
    # Nothing partial: a consumer exists only with both of its allocations.
    mine = {c: n for c, n in rows.items() if c in outcomes}
    assert set(mine.values()) <= {2}
    accepted = {c for c, o in outcomes.items() if o == "204"}
    assert accepted <= set(mine), "every acknowledged claim is stored"
    assert set(mine) <= accepted | {c for c, o in outcomes.items() if o == "unknown"}
    assert state["usage"] == {(cpu, "VCPU"): len(mine), (memory, "MEMORY_MB"): 256 * len(mine)}
    # The rest of the deployment carried on.
    async with _fresh_connections() as client:
        usage = await _reported_usage(client, topology.servers[0], admin, cpu)
    assert usage == {"VCPU": len(mine)}
