"""Cloud-scale data, side by side: allot and Placement 16.0.0 on one dataset, same PostgreSQL.

    python -m bench.cloud_scale        # writes bench/results/cloud_scale.json

The dataset is built once, in Placement's schema (COPY), then brought into allot with
`allot db import-placement`, so both serve exactly the same rows:
- 10,000 computes `cn<i>`, each with two NUMA children (PCPU 16, VCPU 16 at ratio 4.0,
  MEMORY_MB 131,072 with 512 reserved, HW_NUMA_ROOT); roots carry HW_CPU_X86_AVX2 (1 in 2)
  and their rack's aggregate (racks of 40);
- 100 sharing pools `pool<j>` (DISK_GB 10,000,000, MISC_SHARES_VIA_AGGREGATE), each in the
  aggregates of the racks r with r % 100 == j; and one more pool that nothing uses;
- 300,000 instances: PCPU 1 and MEMORY_MB 1,024 on a NUMA child, DISK_GB 10 on a pool, and
  VCPU 1 for one in three: 1,000,000 allocation rows. Pools 0 and 1 hold 100,000 allocations
  each; the other 98 share the rest.

Then, servers alternated: allocation candidates at 8 clients (plain, and granular with a
required trait and member_of; limit=50); claims at 32 clients; claims one at a time on a pool
holding 100,000 allocations and on the empty pool; each allot process's memory.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg

from bench import load
from bench.dataset import advance_sequences, copy, uuid_of
from bench.side_by_side import psql, recreate, rss_mib
from tests.concurrency import servers
from tests.conftest import mint
from tests.placement_server import (
    create_database,
    drop_database,
    placement,
    with_standard_traits,
)

HERE = Path(__file__).resolve().parent
ALLOT = str(Path(sys.executable).with_name("allot"))
SOURCE, TARGET = "placement_cloud_bench", "allot_cloud_bench"
PCPU, VCPU, MEMORY_MB, DISK_GB = 14, 0, 1, 2  # os-resource-classes indexes
RACK, POOLS, HOT = 40, 100, 2
VERSION = "placement 1.36"


def build(computes: int, consumers: int) -> dict[str, list[tuple[Any, ...]]]:
    rows: dict[str, list[tuple[Any, ...]]] = {
        k: [] for k in ("rp", "inv", "trait", "agg", "cons", "alloc")
    }
    next_id = iter(range(1, 10_000_000))
    numas: list[int] = []
    pools: list[int] = []

    def add(name: str, parent: int | None, root: int | None) -> int:
        pid = next(next_id)
        rows["rp"].append((pid, uuid_of(name), name, 0, parent, root or pid))
        return pid

    def inventory(pid: int, rc: int, total: int, reserved: int = 0, ratio: float = 1.0) -> None:
        rows["inv"].append((pid, rc, total, reserved, 1, total, 1, ratio))

    racks = (computes + RACK - 1) // RACK
    for j in range(POOLS + 1):
        pool = add(f"pool{j}", None, None)
        inventory(pool, DISK_GB, 10_000_000)
        rows["trait"].append((pool, "MISC_SHARES_VIA_AGGREGATE"))
        rows["agg"] += [(pool, r) for r in range(racks) if r % POOLS == j]
        pools.append(pool)
    for i in range(computes):
        root = add(f"cn{i}", None, None)
        rows["agg"].append((root, i // RACK))
        if i % 2 == 0:
            rows["trait"].append((root, "HW_CPU_X86_AVX2"))
        for n in range(2):
            numa = add(f"cn{i}_numa{n}", root, root)
            inventory(numa, PCPU, 16)
            inventory(numa, VCPU, 16, ratio=4.0)
            inventory(numa, MEMORY_MB, 131_072, reserved=512)
            rows["trait"].append((numa, "HW_NUMA_ROOT"))
            numas.append(numa)
    for c in range(consumers):
        numa = numas[c % len(numas)]
        pool = pools[c % HOT] if c < HOT * 100_000 else pools[HOT + c % (POOLS - HOT)]
        rows["cons"].append((c + 1, uuid_of(f"vm{c}"), c % 1000 + 1, c % 5000 + 1))
        rows["alloc"] += [
            (c + 1, numa, PCPU, 1),
            (c + 1, numa, MEMORY_MB, 1024),
            (c + 1, pool, DISK_GB, 10),
        ]
        if c % 3 == 0:
            rows["alloc"].append((c + 1, numa, VCPU, 1))
    return rows


async def load_placement(dsn: str, computes: int, consumers: int) -> dict[str, int]:
    rows = build(computes, consumers)
    conn = await asyncpg.connect(dsn)
    try:
        traits = dict(await conn.fetch("SELECT name, id FROM traits"))
        uuids = {c: u for c, u, _, _ in rows["cons"]}
        async with conn.transaction():
            await copy(
                conn,
                "resource_providers",
                ["id", "uuid", "name", "generation", "parent_provider_id", "root_provider_id"],
                rows["rp"],
            )
            await copy(
                conn,
                "inventories",
                [
                    "resource_provider_id",
                    "resource_class_id",
                    "total",
                    "reserved",
                    "min_unit",
                    "max_unit",
                    "step_size",
                    "allocation_ratio",
                ],
                rows["inv"],
            )
            await copy(
                conn,
                "resource_provider_traits",
                ["resource_provider_id", "trait_id"],
                [(p, traits[t]) for p, t in rows["trait"]],
            )
            racks = sorted({r for _, r in rows["agg"]})
            await copy(
                conn,
                "placement_aggregates",
                ["id", "uuid"],
                [(r + 1, uuid_of(f"rack{r}")) for r in racks],
            )
            await copy(
                conn,
                "resource_provider_aggregates",
                ["resource_provider_id", "aggregate_id"],
                [(p, r + 1) for p, r in rows["agg"]],
            )
            await copy(
                conn,
                "projects",
                ["id", "external_id"],
                [(p, f"project{p}") for p in range(1, 1001)],
            )
            await copy(
                conn, "users", ["id", "external_id"], [(u, f"user{u}") for u in range(1, 5001)]
            )
            await copy(conn, "consumer_types", ["id", "name"], [(1, "INSTANCE")])
            await copy(
                conn,
                "consumers",
                ["id", "uuid", "project_id", "user_id", "generation", "consumer_type_id"],
                [(*r, 1, 1) for r in rows["cons"]],
            )
            await copy(
                conn,
                "allocations",
                ["consumer_id", "resource_provider_id", "resource_class_id", "used"],
                [(uuids[c], rp, rc, n) for c, rp, rc, n in rows["alloc"]],
            )
            await advance_sequences(
                conn,
                ("resource_providers", "inventories", "placement_aggregates", "projects",
                 "users", "consumer_types", "consumers", "allocations"),
            )  # fmt: skip
        await conn.execute("ANALYZE")
    finally:
        await conn.close()
    return {"providers": len(rows["rp"]), "consumers": consumers, "allocations": len(rows["alloc"])}


def queries(racks: int) -> dict[str, str]:
    some = ",".join(uuid_of(f"rack{r}") for r in range(0, min(racks, 50), 2))
    return {
        "plain": "resources=PCPU:1,MEMORY_MB:1024,DISK_GB:10&limit=50",
        "granular": (
            "resources=DISK_GB:10&resources1=PCPU:1,MEMORY_MB:1024&required1=HW_NUMA_ROOT"
            f"&root_required=HW_CPU_X86_AVX2&member_of=in:{some}&group_policy=none&limit=50"
        ),
    }


async def candidates(
    target: load.Target, query: str, clients: int, seconds: float, cap: int
) -> dict[str, Any]:
    tally = load.Tally()
    deadline, sent = time.perf_counter() + seconds, 0

    async def worker(http: load.Client, _: int) -> None:
        nonlocal sent
        while time.perf_counter() < deadline and sent < cap:
            sent += 1
            await tally.call(http.request("GET", f"/allocation_candidates?{query}"))

    await load._run_clients(target, clients, worker, tally)
    return tally.summary(200)


async def pool_claims(target: load.Target, pools: dict[str, str], rounds: int) -> dict[str, Any]:
    """Claims one at a time, alternating between the pools: p50 of each."""
    times: dict[str, list[float]] = {name: [] for name in pools}
    async with target.client() as http:
        for _ in range(rounds):
            for name, pool in pools.items():
                body = load.claim_body({pool: {"DISK_GB": 10}}, None)
                started = time.perf_counter()
                answer = await http.put(f"/allocations/{uuid.uuid4()}", body)
                times[name].append((time.perf_counter() - started) * 1000)
                assert answer.status_code == 204, answer.body[:300]
    return {name: round(statistics.median(t), 2) for name, t in times.items()}


def target_pair(allot: str, placement_url: str) -> list[load.Target]:
    token = mint(roles=["admin"], project="bench")
    return [
        load.Target(
            "allot", allot, {"authorization": f"Bearer {token}", "openstack-api-version": VERSION}
        ),
        load.Target(
            "placement", placement_url, {"x-auth-token": "admin", "openstack-api-version": VERSION}
        ),
    ]


async def measure(args: argparse.Namespace, allot: str, placement_url: str) -> dict[str, Any]:
    out: dict[str, Any] = {"candidates": {}, "claims": {}, "pool_claims": {}}
    targets = target_pair(allot, placement_url)
    racks = (args.computes + RACK - 1) // RACK
    for name, query in queries(racks).items():
        for t in targets:
            figures = await candidates(t, query, 8, args.seconds, args.candidate_cap)
            out["candidates"].setdefault(name, {})[t.name] = figures
            print(
                name,
                t.name,
                figures["p50_ms"],
                figures["p99_ms"],
                figures["requests"],
                figures["statuses"],
                flush=True,
            )
    numa_uuids = [uuid_of(f"cn{i}_numa{n}") for i in range(0, args.computes, 7) for n in (0, 1)]
    for t in targets:
        ledger = load.Ledger()
        figures = await load.claim(t, numa_uuids, 32, args.seconds, ledger)
        out["claims"][t.name] = figures
        print("claims", t.name, figures["accepted_per_s"], figures["p99_ms"], flush=True)
    pools = {
        "pool with 100,000 allocations": uuid_of("pool0"),
        "empty pool": uuid_of(f"pool{POOLS}"),
    }
    for t in targets:
        out["pool_claims"][t.name] = await pool_claims(t, pools, args.pool_rounds)
        print("pool claims", t.name, out["pool_claims"][t.name], flush=True)
    return out


def _serving(port: str) -> int:
    """The pid of the `allot serve` supervisor listening on `port` (its workers are children)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"serve" in argv and port.encode() in argv and b"--workers" in argv:
            return int(entry.name)
    raise RuntimeError(f"no allot serve on port {port}")


def _dataset(args: argparse.Namespace, work: Path) -> tuple[str, str, dict[str, Any]]:
    """The dataset in Placement's schema, imported into allot: (Placement's database URL,
    allot's, figures)."""
    source = create_database("postgresql", SOURCE)
    with_standard_traits(source, work / "sync")
    started = time.perf_counter()
    dsn = f"postgresql://postgres@127.0.0.1:5432/{SOURCE}"
    figures = asyncio.run(load_placement(dsn, args.computes, args.consumers))
    figures["load_s"] = round(time.perf_counter() - started, 1)
    recreate(TARGET)
    target_url = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{TARGET}"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("ALLOT_")},
        "ALLOT_DATABASE_URL": target_url,
    }
    subprocess.run([ALLOT, "db", "upgrade"], env=env, check=True, capture_output=True)
    started = time.perf_counter()
    subprocess.run([ALLOT, "db", "import-placement", dsn], env=env, check=True,
                   capture_output=True)  # fmt: skip
    figures["import_s"] = round(time.perf_counter() - started, 1)
    psql(TARGET, "ANALYZE")
    return source, target_url, figures


def _allot(target_url: str, work: Path) -> Any:
    # A connection for each of the 32 claiming clients (16 a worker): their claims are spread
    # over thousands of providers, so they seldom wait on one another's locks (README,
    # "Many processes"). Placement's workers keep 10 plus up to 20 overflow each
    # (tests/placement_server.py).
    return servers.allot_serve(
        target_url, workers=2, log=work / "allot.log", ports=range(8950, 9000), pool_size=16
    )


def run(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="allot-cloud-bench-"))
    results: dict[str, Any] = {}
    try:
        source, target_url, results["dataset"] = _dataset(args, work)
        with (
            _allot(target_url, work) as allot,
            placement(source, work / "serve", workers=2) as placement_url,
        ):  # fmt: skip
            results.update(asyncio.run(measure(args, allot, placement_url)))
            results["allot_rss_mib"] = rss_mib(_serving(allot.rsplit(":", 1)[1]))
    finally:
        drop_database("postgresql", SOURCE)
        psql("postgres", f'DROP DATABASE IF EXISTS "{TARGET}" WITH (FORCE)')
    return results


def run_large(args: argparse.Namespace) -> dict[str, Any]:
    """allot alone (Placement takes minutes a request at this size): candidates at limit=10."""
    work = Path(tempfile.mkdtemp(prefix="allot-cloud-bench-"))
    results: dict[str, Any] = {}
    try:
        _, target_url, results["dataset"] = _dataset(args, work)
        with _allot(target_url, work) as allot:
            token = mint(roles=["admin"], project="bench")
            target = load.Target("allot", allot, {"authorization": f"Bearer {token}",
                                                  "openstack-api-version": VERSION})  # fmt: skip
            racks = (args.computes + RACK - 1) // RACK
            for name, query in queries(racks).items():
                query = query.replace("limit=50", "limit=10")
                results[name] = asyncio.run(
                    candidates(target, query, 8, args.seconds, args.candidate_cap)
                )
                print(name, results[name]["p50_ms"], results[name]["p99_ms"], flush=True)
            results["allot_rss_mib"] = rss_mib(_serving(allot.rsplit(":", 1)[1]))
    finally:
        drop_database("postgresql", SOURCE)
        psql("postgres", f'DROP DATABASE IF EXISTS "{TARGET}" WITH (FORCE)')
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--computes", type=int, default=10_000)
    parser.add_argument("--consumers", type=int, default=300_000)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--candidate-cap", type=int, default=400)
    parser.add_argument("--pool-rounds", type=int, default=200)
    parser.add_argument(
        "--large", action="store_true",
        help="allot alone on 33,334 computes (100,000 providers): candidates at limit=10",
    )  # fmt: skip
    args = parser.parse_args()
    random.seed(7)
    out = HERE / "results" / "cloud_scale.json"
    if args.large:
        args.computes = 33_334
        recorded = json.loads(out.read_text())
        recorded["at_100k_providers"] = {
            "recorded": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            **run_large(args),
        }
        out.write_text(json.dumps(recorded, indent=2) + "\n")
        print(json.dumps(recorded["at_100k_providers"], indent=2))
        return
    results = {
        "recorded": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "commit": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        ).stdout.strip(),
        "settings": vars(args),
        **run(args),
    }
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps({k: v for k, v in results.items() if k != "settings"}, indent=2)[:4000])


if __name__ == "__main__":
    main()
