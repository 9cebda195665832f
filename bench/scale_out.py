"""Scale-out figures: claims per second direct to PostgreSQL and through PgBouncer
(transaction mode), alternated in one run; and failover recovery with Patroni.

    python -m bench.scale_out            # writes bench/results/scale_out.json

The engines are the test suite's own (tests/concurrency/servers.py, tests/patroni_cluster.py):
Debian's PgBouncer and Patroni with etcd, on loopback. bench/report.py puts the figures in
bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench import load
from tests.concurrency import servers
from tests.conftest import mint
from tests.deployment.topology import free_port, wait_for
from tests.patroni_cluster import patroni_cluster

HERE = Path(__file__).resolve().parent
PORTS = range(8900, 8950)


async def _claims(base: str, clients: int, seconds: float) -> dict[str, Any]:
    target = load.Target.allot(base, mint(roles=["admin"], project="bench"))
    providers, _ = await load.setup(target, 100, clients, f"scale-{time.monotonic_ns()}")
    ledger = load.Ledger()
    result = await load.claim(target, providers, clients, seconds, ledger)
    result["check"] = await load.check(target, providers, ledger)
    return result


def _serve(url: str, log: Path, settings: dict[str, str] | None = None) -> Any:
    return servers.allot_serve(url, workers=2, log=log, ports=PORTS, pool_size=5, settings=settings)


async def pgbouncer_beside_direct(rounds: int, clients: int, seconds: float) -> dict[str, Any]:
    runs: dict[str, list[dict[str, Any]]] = {"direct": [], "pgbouncer": []}
    async with servers.own_postgres("scale_bench") as url:
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            with servers.pgbouncer(url, workdir=work, ports=PORTS) as pooled:
                for _ in range(rounds):
                    with _serve(url, work / "direct.log") as base:
                        runs["direct"].append(await _claims(base, clients, seconds))
                    pooler = {"ALLOT_DATABASE_TRANSACTION_POOLER": "true"}
                    with _serve(pooled, work / "pooled.log", pooler) as base:
                        runs["pgbouncer"].append(await _claims(base, clients, seconds))
    summary: dict[str, Any] = {"clients": clients, "seconds": seconds, "rounds": rounds}
    for name, results in runs.items():
        summary[name] = {
            "claims_per_s": [r["accepted_per_s"] for r in results],
            "p50_ms": [r["p50_ms"] for r in results],
            "p99_ms": [r["p99_ms"] for r in results],
            "over_allocated": sum(r["check"]["over_allocated"] for r in results),
        }
    direct = statistics.median(summary["direct"]["claims_per_s"])
    pooled_rate = statistics.median(summary["pgbouncer"]["claims_per_s"])
    summary["pgbouncer_share_of_direct"] = round(pooled_rate / direct, 2)
    return summary


def failover(rounds: int) -> dict[str, Any]:
    """Seconds from killing the primary's host to the first write decided again."""
    ports = [free_port() for _ in range(6)]
    recoveries = []
    with patroni_cluster(ports) as nodes, tempfile.TemporaryDirectory() as tmp:
        hosts = "&".join(f"host=127.0.0.1:{n.pg_port}" for n in nodes)
        url = f"postgresql+asyncpg://postgres@/postgres?{hosts}&target_session_attrs=read-write"
        subprocess.run(
            [servers.ALLOT, "db", "upgrade"],
            env={**os.environ, "ALLOT_DATABASE_URL": url},
            check=True,
            capture_output=True,
        )
        with _serve(url, Path(tmp) / "serve.log") as base:
            headers = {"x-auth-token": mint(roles=["admin"], project="bench")}
            for round_ in range(rounds):
                doomed = next(n for n in nodes if n.role() == "primary")
                heir = next(n for n in nodes if n is not doomed)
                killed = time.monotonic()
                doomed.kill_host()
                while True:
                    name = f"CUSTOM_FAILOVER_{round_}_{time.monotonic_ns()}"
                    answer = httpx.post(
                        f"{base}/resource_classes",
                        json={"name": name},
                        headers={**headers, "openstack-api-version": "placement latest"},
                    )
                    if answer.status_code == 201:
                        break
                    assert answer.status_code == 503, answer.text
                    assert time.monotonic() - killed < 120, "no recovery"
                    time.sleep(0.05)
                recoveries.append(round(time.monotonic() - killed, 2))
                doomed.start()
                wait_for(doomed.is_sync_replica, "the old primary back as a replica", 150)
                wait_for(lambda h=heir: h.role() == "primary", "the heir still primary")
    return {"ttl_s": 10, "kill_to_first_write_s": recoveries}


def _postgres_cpu_s(data_dir: Path) -> float:
    """CPU seconds a PostgreSQL server has used: its postmaster, the children it has reaped,
    and the children alive now."""
    tick = os.sysconf("SC_CLK_TCK")
    postmaster = int((data_dir / "postmaster.pid").read_text().split()[0])
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid, ppid = int(entry.name), int(fields[1])
        if pid == postmaster:
            total += sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
        elif ppid == postmaster:
            total += int(fields[11]) + int(fields[12])
    return total / tick


async def replica_cpu(requests: int) -> dict[str, Any]:
    """The primary's CPU per allocation-candidates request, without and with a replica."""
    from app.engines import make_engine
    from app.main import create_app
    from app.migrations_runner import upgrade
    from tests.conftest import make_client
    from tests.conftest import test_settings as settings_for
    from tests.pg_cluster import primary_and_standby

    first, second = free_port(), free_port()
    per_request: dict[str, float] = {}
    with primary_and_standby((first, second)) as (primary, standby):
        engine = make_engine(primary.url, settings_for(primary.url))
        await upgrade(engine)
        await engine.dispose()
        headers = {
            "authorization": f"Bearer {mint(roles=['admin'], project='bench')}",
            "openstack-api-version": "placement latest",
        }
        for name, read_url in (("primary only", None), ("with a replica", standby.url)):
            app = create_app(settings_for(primary.url, database_read_url=read_url))
            async with app.router.lifespan_context(app), make_client(app, headers) as client:
                if not per_request:  # the dataset, once: 200 providers
                    target = load.Target(
                        "allot", "http://127.0.0.1", headers, httpx.ASGITransport(app=app)
                    )
                    await load.setup(target, 200, 8, "replica-cpu")
                await asyncio.sleep(1)  # the replica caught up and known fresh
                path = "/allocation_candidates?resources=VCPU:1,MEMORY_MB:64&limit=50"
                before = _postgres_cpu_s(primary.data)
                for _ in range(requests):
                    assert (await client.get(path)).status_code == 200
                used = _postgres_cpu_s(primary.data) - before
                per_request[name] = round(used / requests * 1000, 3)
    return {"requests": requests, "primary_cpu_ms_per_request": per_request}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=8.0)
    args = parser.parse_args()
    results = {
        "recorded": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "commit": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        ).stdout.strip(),
        "pgbouncer": asyncio.run(pgbouncer_beside_direct(args.rounds, args.clients, args.seconds)),
        "failover": failover(args.rounds),
        "replica": asyncio.run(replica_cpu(300)),
    }
    out = HERE / "results" / "scale_out.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
