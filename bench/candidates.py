"""The allocation candidates scenario: latency of GET /allocation_candidates, allot vs Placement.

Both servers run on loopback over the same PostgreSQL, each on a database filled by
`bench/dataset.py` with the same layout. Requests are sequential (one in flight per target),
a bounded number per scenario (`--requests`, and at most `--seconds` each), after a warm-up.

    .venv/bin/python bench/candidates.py --providers 1000 \\
        --target allot=http://127.0.0.1:8310 --allot-token "$TOKEN" \\
        --target placement=http://127.0.0.1:8780

`--compare` first checks that both targets return the same candidates (as sets) for every
scenario without `limit` (use it on a small dataset: Placement builds every candidate).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from typing import Any

import httpx

from bench.dataset import layout_sizes, rack_aggregate

VERSION = "placement 1.36"
# member_of=in: of at most this many uuids stays inside allot's bound on the value
# (app.query.AGGREGATES_MAX_LENGTH, 1,000 characters); longer is a 400.
MAX_AGGREGATES = 25


def scenarios(providers: int) -> dict[str, str]:
    _, racks = layout_sizes(providers)
    # Half the racks, at most MAX_AGGREGATES (30% of them at 10,000 providers).
    half = ",".join(rack_aggregate(r) for r in range(max(1, min(racks // 2, MAX_AGGREGATES))))
    plain = "resources=VCPU:1,MEMORY_MB:1024,DISK_GB:10"
    granular = (
        "resources=MEMORY_MB:1024,DISK_GB:10"
        "&resources1=VCPU:2&required1=HW_NUMA_ROOT"
        "&root_required=HW_CPU_X86_AVX2,!COMPUTE_STATUS_DISABLED"
        f"&member_of=in:{half}&group_policy=none"
    )
    return {
        "plain limit=10": f"{plain}&limit=10",
        "plain limit=1000": f"{plain}&limit=1000",
        "granular limit=10": f"{granular}&limit=10",
        "granular limit=1000": f"{granular}&limit=1000",
    }


def headers_for(name: str, token: str | None) -> dict[str, str]:
    headers = {"openstack-api-version": VERSION, "accept": "application/json"}
    if name.startswith("allot"):  # allot, allot-before, ...: every allot target takes the JWT
        headers["authorization"] = f"Bearer {token}"
    else:
        headers["x-auth-token"] = "admin"  # Placement under noauth2
    return headers


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


async def measure(
    client: httpx.AsyncClient, query: str, requests: int, seconds: float
) -> dict[str, Any]:
    for _ in range(2):  # warm-up
        (await client.get(f"/allocation_candidates?{query}")).raise_for_status()
    latencies: list[float] = []
    count = 0
    deadline = time.perf_counter() + seconds
    while len(latencies) < requests and time.perf_counter() < deadline:
        started = time.perf_counter()
        response = await client.get(f"/allocation_candidates?{query}")
        latencies.append((time.perf_counter() - started) * 1000)
        response.raise_for_status()
        count = len(response.json()["allocation_requests"])
    return {
        "n": len(latencies),
        "p50_ms": round(statistics.median(latencies), 1),
        "p99_ms": round(percentile(latencies, 99), 1),
        "candidates": count,
    }


def canonical(body: dict[str, Any]) -> set[str]:
    return {
        json.dumps(request["allocations"], sort_keys=True)
        for request in body["allocation_requests"]
    }


async def compare(targets: dict[str, str], token: str | None, providers: int) -> None:
    results: dict[str, dict[str, set[str]]] = {}
    for name, url in targets.items():
        async with httpx.AsyncClient(
            base_url=url, headers=headers_for(name, token), timeout=600
        ) as client:
            results[name] = {}
            for label, query in scenarios(providers).items():
                if "limit=10&" in query + "&":
                    continue
                unlimited = query.replace("&limit=1000", "")
                response = await client.get(f"/allocation_candidates?{unlimited}")
                response.raise_for_status()
                results[name][label.split()[0]] = canonical(response.json())
    names = list(results)
    for label in results[names[0]]:
        sets = [results[n][label] for n in names]
        same = all(s == sets[0] for s in sets)
        sizes = ", ".join(f"{n}={len(results[n][label])}" for n in names)
        print(f"compare {label}: {'same' if same else 'DIFFERENT'} candidates ({sizes})")
        if not same:
            raise SystemExit(1)


async def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    targets = dict(t.split("=", 1) for t in args.target)
    if args.compare:
        await compare(targets, args.allot_token, args.providers)
    rows = []
    for label, query in scenarios(args.providers).items():
        for name, url in targets.items():
            async with httpx.AsyncClient(
                base_url=url, headers=headers_for(name, args.allot_token), timeout=600
            ) as client:
                figures = await measure(client, query, args.requests, args.seconds)
            rows.append({"providers": args.providers, "scenario": label, "target": name, **figures})
            print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--providers", type=int, default=1000, help="the dataset's size")
    parser.add_argument("--target", action="append", required=True, help="name=url")
    parser.add_argument("--allot-token", help="bearer token for the targets named allot*")
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=60.0, help="per scenario and target")
    parser.add_argument("--compare", action="store_true")
    parser.add_argument("--json", help="append the figures (JSON lines) to this file")
    args = parser.parse_args()
    rows = asyncio.run(run(args))
    if args.json:
        with open(args.json, "a") as out:
            for row in rows:
                out.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
