"""The production topology, started natively, keeps its promises with several processes.

`allot db upgrade` (the one-shot migration job), then two `allot serve --workers 2` on
different ports against one PostgreSQL (through a TCP proxy the tests can cut) and one Redis,
as docker-compose.yml runs them. Needs PostgreSQL (ALLOT_TEST_DATABASE_URL); CI always has it.
"""

from __future__ import annotations

import asyncio
import os
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

    def spare(self, name: str) -> Process:
        """Another `allot serve` of the same deployment, for tests that stop one."""
        return Process(name, free_port(), self.env, self.workdir / f"{name}.log")


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
                server.start()
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
    text = (await client.get(f"{server.url}/metrics")).text
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
