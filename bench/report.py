"""bench/RESULTS.md and bench/claims.png from bench/results.json (bench/side_by_side.py).

.venv/bin/python -m bench.report            # rewrite both from the recorded results.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

TARGETS = {"throughput_ratio": 8.0, "p99_ratio": 0.25, "ceiling_share": 0.20, "rss_mib": 200.0}


def _row(cells: list[Any]) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    return [_row(header), _row(["---"] * len(header)), *(_row(r) for r in rows)]


def headline(results: dict[str, Any]) -> dict[str, Any]:
    wanted = results["settings"]["main_clients"]
    levels = [f["clients"] for f in results["targets"]["allot"]["claim_by_clients"]]
    main = min(levels, key=lambda c: abs(c - wanted))  # the main level, or the closest run
    at = {
        name: next(f for f in data["claim_by_clients"] if f["clients"] == main)
        for name, data in results["targets"].items()
    }
    allot, placement = at["allot"], at["placement"]
    ceiling = results["pgbench"]["tps"]
    rss = max(results["targets"]["allot"]["rss_mib_after_claims"].values())
    five_xx = {
        name: sum(
            f["status_5xx"] + f.get("transport_errors", 0)
            for key in ("claim_by_clients", "claim_by_providers")
            for f in data[key]
        )
        + sum(data[key]["status_5xx"] for key in ("contention", "churn"))
        for name, data in results["targets"].items()
    }
    checks = {
        name: [data["claim_check"], data["contention"]["check"], data["churn"]["check"]]
        for name, data in results["targets"].items()
    }
    over = {name: sum(c["over_allocated"] for c in found) for name, found in checks.items()}
    mismatches = {name: sum(c["usage_mismatches"] for c in found) for name, found in checks.items()}
    return {
        "clients": main,
        "allot": allot,
        "placement": placement,
        "throughput_ratio": allot["accepted_per_s"] / max(placement["accepted_per_s"], 0.1),
        "p99_ratio": allot["p99_ms"] / max(placement["p99_ms"], 0.1),
        "ceiling": ceiling,
        "ceiling_share": allot["accepted_per_s"] / max(ceiling, 0.1),
        "allot_max_rss_mib": rss,
        "errors_5xx": five_xx,
        "over_allocations": over,
        "usage_mismatches": mismatches,
    }


def main_client_ratios(results: dict[str, Any]) -> list[tuple[float, float]]:
    """(claims/s ratio, p99 ratio) of every step run at the main concurrency: the sweep's and
    each provider count's. One machine is noisy; the spread says how much."""
    t, main = results["targets"], results["settings"]["main_clients"]
    return [
        (
            fa["accepted_per_s"] / max(fp["accepted_per_s"], 0.1),
            fa["p99_ms"] / max(fp["p99_ms"], 0.1),
        )
        for key in ("claim_by_clients", "claim_by_providers")
        for fa, fp in zip(t["allot"][key], t["placement"][key], strict=True)
        if fa["clients"] == main
    ]


def _met(ok: bool) -> str:
    return "met" if ok else "**not met**"


def _steal(share: float | None) -> str:
    if share is None:
        return ""
    return (
        f" CPU time the hypervisor gave to other guests during the run (steal): {share:.0%}. "
        "A busy host has been seen here to slow Placement more than allot (each server's CPU "
        "time per claim grows, Placement's the more): read the ratios beside this figure."
    )


def _pair(by_target: dict[str, int]) -> str:
    return f"{by_target['allot']} / {by_target['placement']}"


def markdown(results: dict[str, Any]) -> str:
    h = headline(results)
    ratios = main_client_ratios(results)
    m = results["machine"]
    t = results["targets"]
    lines = [
        "# Benchmark: allot vs OpenStack Placement, side by side",
        "",
        "Recorded by `bench/side_by_side.py` in one run on one machine: allot "
        f"({results['settings']['workers']} worker processes) and Placement {m['placement']} "
        f"(gunicorn, {results['settings']['workers']} sync workers, noauth2) on the same "
        f"PostgreSQL {m['postgresql']}, interleaved step by step, plus pgbench running one "
        "allocation write's statements (`bench/pgbench_allocation.sql`) as the database's "
        "ceiling. The load generator (`bench/load.py`: HTTP/1.1 on asyncio, answers parsed "
        "by httptools) runs on the same machine, the same for both servers.",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, Linux {m['kernel']}, "
        f"Python {m['python']}; allot commit `{m['allot_commit']}`. Load average at start "
        f"{_load(m['load_average_at_start'])}, at end {_load(m.get('load_average_at_end'))} "
        "(the run itself loads both cores)." + _steal(m.get("cpu_steal_share")),
        "",
        f"## Headline: claims at {h['clients']} concurrent clients",
        "",
    ]
    a, p = h["allot"], h["placement"]
    lines += _table(
        ["", "allot", "Placement", "ratio", "target", ""],
        [
            [
                "accepted claims/s",
                a["accepted_per_s"],
                p["accepted_per_s"],
                f"{h['throughput_ratio']:.1f}x",
                f">= {TARGETS['throughput_ratio']:.0f}x",
                _met(h["throughput_ratio"] >= TARGETS["throughput_ratio"]),
            ],
            ["p50 ms", a["p50_ms"], p["p50_ms"], "", "", ""],
            ["p95 ms", a["p95_ms"], p["p95_ms"], "", "", ""],
            [
                "p99 ms",
                a["p99_ms"],
                p["p99_ms"],
                f"{h['p99_ratio']:.2f}",
                f"<= {TARGETS['p99_ratio']}",
                _met(h["p99_ratio"] <= TARGETS["p99_ratio"]),
            ],
            ["409 answers", a["status_409"], p["status_409"], "", "", ""],
            [
                "share of the pgbench ceiling",
                f"{h['ceiling_share']:.0%}",
                f"{p['accepted_per_s'] / max(h['ceiling'], 0.1):.0%}",
                "",
                f">= {TARGETS['ceiling_share']:.0%}",
                _met(h["ceiling_share"] >= TARGETS["ceiling_share"]),
            ],
        ],
    )
    lines += [
        "",
        f"- pgbench ceiling: **{h['ceiling']} allocation-shaped transactions/s** at "
        f"{results['pgbench']['clients']} clients (average latency "
        f"{results['pgbench']['latency_avg_ms']} ms).",
        "- In every scenario, allot / Placement: 5xx answers and transport errors "
        f"**{_pair(h['errors_5xx'])}**; over-allocated provider inventories after claim, "
        f"contention and churn **{_pair(h['over_allocations'])}**; providers whose usage "
        "differs from the claims the clients were told were accepted "
        f"**{_pair(h['usage_mismatches'])}**.",
        "- Every step of the run at the same concurrency (the sweep's, then each provider "
        "count's): claims/s ratios "
        + ", ".join(f"{r:.1f}x" for r, _ in ratios)
        + "; p99 ratios "
        + ", ".join(f"{q:.2f}" for _, q in ratios)
        + ". The headline is the sweep's step.",
        f"- The load generator itself used {a.get('client_cpu_share', 0):.0%} of a core while "
        f"loading allot at {h['clients']} clients ({p.get('client_cpu_share', 0):.0%} for "
        "Placement): it runs on the same 2 cores as the servers and PostgreSQL.",
        f"- Resident memory after the claim scenarios, largest allot process: "
        f"**{h['allot_max_rss_mib']} MiB** (target < {TARGETS['rss_mib']:.0f}, "
        f"{_met(h['allot_max_rss_mib'] < TARGETS['rss_mib'])}).",
        "",
        "![throughput against concurrency, latency against providers](claims.png)",
        "",
        "## Claims: throughput against concurrency",
        "",
        f"New-consumer `PUT /allocations/{{uuid}}` (VCPU 1, MEMORY_MB 64 on one random provider "
        f"of {results['settings']['sweep_providers']}), {results['settings']['seconds']} s per "
        "step.",
        "",
    ]
    rows = []
    for i, fa in enumerate(t["allot"]["claim_by_clients"]):
        fp = t["placement"]["claim_by_clients"][i]
        rows.append(
            [
                fa["clients"],
                fa["accepted_per_s"],
                fp["accepted_per_s"],
                f"{fa['accepted_per_s'] / max(fp['accepted_per_s'], 0.1):.1f}x",
                f"{fa['p50_ms']} / {fa['p99_ms']}",
                f"{fp['p50_ms']} / {fp['p99_ms']}",
                f"{fa['status_409']} / {fp['status_409']}",
            ]
        )
    lines += _table(
        [
            "clients",
            "allot claims/s",
            "Placement claims/s",
            "ratio",
            "allot p50 / p99 ms",
            "Placement p50 / p99 ms",
            "409s allot / Placement",
        ],
        rows,
    )
    lines += ["", "## Claims: latency against providers", ""]
    rows = []
    for i, fa in enumerate(t["allot"]["claim_by_providers"]):
        fp = t["placement"]["claim_by_providers"][i]
        rows.append(
            [
                fa["providers"],
                fa["clients"],
                fa["accepted_per_s"],
                fp["accepted_per_s"],
                f"{fa['p50_ms']} / {fa['p99_ms']}",
                f"{fp['p50_ms']} / {fp['p99_ms']}",
            ]
        )
    lines += _table(
        [
            "providers",
            "clients",
            "allot claims/s",
            "Placement claims/s",
            "allot p50 / p99 ms",
            "Placement p50 / p99 ms",
        ],
        rows,
    )
    lines += ["", "## Other scenarios", ""]
    rows = []
    for name in ("allot", "placement"):
        s, c, ch = t[name]["setup"], t[name]["contention"], t[name]["churn"]
        rows.append(
            [
                name,
                f"{s['providers_per_s']} providers/s ({s['providers']})",
                f"{c['filled']}/{c['capacity']} filled, {c['accepted_per_s']} claims/s, "
                f"p99 {c['p99_ms']} ms, 409s {c['codes']}",
                f"{ch['moves']} moves + {ch['deletes']} deletes, {ch['accepted_per_s']} ops/s, "
                f"p99 {ch['p99_ms']} ms",
            ]
        )
    lines += _table(["", "setup", "contention (2 small providers)", "churn (move / delete)"], rows)
    lines += ["", "Checks (every provider read back through the API):", ""]
    rows = []
    for name in ("allot", "placement"):
        for key, check in (
            ("after claims", t[name]["claim_check"]),
            ("after contention", t[name]["contention"]["check"]),
            ("after churn", t[name]["churn"]["check"]),
        ):
            rows.append(
                [name, key, check["providers"], check["over_allocated"], check["usage_mismatches"]]
            )
    lines += _table(["", "when", "providers", "over-allocated", "usage != accepted claims"], rows)
    lines += ["", "Resident memory after the claim scenarios (MiB):", ""]
    lines += _table(
        ["", "processes"],
        [
            [name, ", ".join(f"{k}: {v}" for k, v in t[name]["rss_mib_after_claims"].items())]
            for name in ("allot", "placement")
        ],
    )
    if results.get("candidates_error"):
        lines += ["", f"Candidates scenario not recorded: `{results['candidates_error']}`"]
    if results.get("candidates"):
        lines += ["", "## Allocation candidates (bench/candidates.py)", ""]
        lines += _table(
            ["providers", "scenario", "target", "n", "p50 ms", "p99 ms", "candidates"],
            [
                [
                    r["providers"],
                    r["scenario"],
                    r["target"],
                    r["n"],
                    r["p50_ms"],
                    r["p99_ms"],
                    r["candidates"],
                ]
                for r in results["candidates"]
            ],
        )
    here = Path(__file__).resolve().parent / "results"
    lines += container_section(here / "container.json")
    lines += scale_out_section(here / "scale_out.json")
    lines += keystone_section(here / "keystone.json")
    lines += import_section(here / "import.json")
    lines += cloud_scale_section(here / "cloud_scale.json")
    lines += [
        "",
        "## How to reproduce",
        "",
        "```sh",
        "../shared/tools/placement/install.sh        # Placement's venv, once",
        ".venv/bin/pip install -e '.[bench]'",
        results.get("command", "python -m bench.side_by_side"),
        "```",
        "",
        f"The run took {results.get('duration_s', '?')} s. pgbench command: "
        f"`{results['pgbench']['command']}`. allot's settings: production, JWT auth, "
        f"rate limits on (storage `{results['settings'].get('allot_rate_limit_storage')}`), "
        "log level WARNING (Placement's start.sh logs warnings only). Any server can be "
        "loaded on its own with `python -m bench.load --base-url URL --token T` "
        "(or `--noauth` for Placement).",
        "",
    ]
    return "\n".join(lines)


def container_section(path: Path) -> list[str]:
    """The image's figures (bench/container.py), when they have been recorded."""
    if not path.exists():
        return []
    figures = json.loads(path.read_text())
    start = figures["cold_start_s"]
    stops = figures["sigterm_under_load"]["runs"]
    largest = ", ".join(f"{p['package']} {p['mib']}" for p in figures["largest_packages"])
    return [
        "",
        "## Container image (bench/container.py)",
        "",
        f"Recorded {figures['recorded']} at commit `{figures['commit']}`, Podman "
        f"{figures['podman']} with runc, the base built from Debian's packages (bookworm, "
        "Python 3.11: no image registry is reachable here, so the official "
        "`python:3.11-slim-bookworm` could not be measured), the server on PostgreSQL over "
        "the host's network, 2 workers, read-only root, no capabilities.",
        "",
        *_table(
            ["figure", "value"],
            [
                ["image size", f"{figures['image_mib']} MiB"],
                ["of which the base image", f"{figures['base_mib']} MiB"],
                ["of which allot's virtualenv", f"{figures['virtualenv_mib']} MiB"],
                ["largest packages in it (MiB)", largest],
                [
                    f"cold `podman run` to `/readyz` 200 (median of {start['runs']})",
                    f"{start['median']} s (min {start['min']}, max {start['max']})",
                ],
                [
                    f"SIGTERM to exit, {figures['sigterm_under_load']['clients']} clients "
                    "loading it",
                    ", ".join(f"{r['seconds']} s" for r in stops)
                    + f" (exit codes {sorted({r['exit_code'] for r in stops})})",
                ],
                [
                    "answers during those runs: 2xx / 5xx / refused after the stop began",
                    ", ".join(f"{r['answered']} / {r['5xx']} / {r['refused']}" for r in stops),
                ],
            ],
        ),
        "",
        f"The virtualenv is what allot adds to either base; the official slim base could "
        f"not be measured here. The image build took {figures['build_s']} s with Podman's "
        "layer cache as the previous build left it (the base is built once per machine, in "
        "about a minute). 'Refused' requests were sent after the server stopped accepting "
        "(connection refused, or a keep-alive connection the shutdown closed); "
        "tests/deployment/test_container.py checks that requests in flight are answered.",
    ]


def scale_out_section(path: Path) -> list[str]:
    """PgBouncer beside direct, and failover recovery (bench/scale_out.py), when recorded."""
    if not path.exists():
        return []
    figures = json.loads(path.read_text())
    pooled, failover = figures["pgbouncer"], figures["failover"]
    rows = [
        [
            name,
            ", ".join(str(x) for x in pooled[name]["claims_per_s"]),
            ", ".join(
                f"{a} / {b}"
                for a, b in zip(pooled[name]["p50_ms"], pooled[name]["p99_ms"], strict=True)
            ),
            pooled[name]["over_allocated"],
        ]
        for name in ("direct", "pgbouncer")
    ]
    return [
        "",
        "## Scale-out (bench/scale_out.py)",
        "",
        f"Recorded {figures['recorded']} at commit `{figures['commit']}`, on the machine above. "
        f"Claims: allot (2 workers, 5 connections each) direct to PostgreSQL, then through "
        f"Debian's PgBouncer 1.18 in transaction mode (6 server connections, "
        f"`ALLOT_DATABASE_TRANSACTION_POOLER=true`), alternated {pooled['rounds']} times, "
        f"{pooled['clients']} clients, {pooled['seconds']} s each.",
        "",
        *_table(["path", "accepted claims/s", "p50 / p99 ms", "over-allocated"], rows),
        "",
        f"Through PgBouncer allot made {pooled['pgbouncer_share_of_direct']:.0%} of its direct "
        "claims/s (median of the rounds): every statement is prepared again in each "
        "transaction, as no prepared statement may outlive one, and each goes through one "
        "more process.",
        "",
        "Failover: a 2-node Patroni cluster (synchronous mode, TTL "
        f"{failover['ttl_s']} s); the primary's host killed (Patroni and postmaster, SIGKILL), "
        "then seconds until allot, not restarted, decided a write again: "
        + ", ".join(f"{s} s" for s in failover["kill_to_first_write_s"])
        + " (goal: at most 15 s).",
        "",
        f"Read replica: {figures['replica']['requests']} allocation-candidates requests over "
        "200 providers, on a primary and a streaming standby of the bench's own; the primary's "
        "CPU per request (its postmaster and backends, from /proc): "
        + ", ".join(
            f"{name} {ms} ms"
            for name, ms in figures["replica"]["primary_cpu_ms_per_request"].items()
        )
        + ".",
    ]


def keystone_section(path: Path) -> list[str]:
    """Keystone tokens beside JWTs and beside Placement (bench/keystone.py), when recorded."""
    if not path.exists():
        return []
    figures = json.loads(path.read_text())
    claims, first = figures["claims"], figures["first_request"]
    rows = [
        [
            name,
            ", ".join(str(x) for x in claims[name]["claims_per_s"]),
            ", ".join(
                f"{a} / {b}"
                for a, b in zip(claims[name]["p50_ms"], claims[name]["p99_ms"], strict=True)
            ),
            claims[name]["status_5xx"],
            claims[name]["over_allocated"],
        ]
        for name in ("allot-jwt", "allot-keystone", "placement-keystone")
    ]
    return [
        "",
        "## Keystone tokens (bench/keystone.py)",
        "",
        f"Recorded {figures['recorded']} at commit `{figures['commit']}`, on the machine above: "
        "real Keystone 30.0.0 (one gunicorn worker, 4 threads, SQLite, Fernet tokens); allot "
        "with 2 workers and Placement 16.0.0 under gunicorn with 2 workers and "
        "keystonemiddleware (`[keystone_authtoken]`, in-process token cache), both on this "
        f"PostgreSQL. Claims by {claims['clients']} clients, {claims['seconds']} s a round, the "
        f"targets alternated {claims['rounds']} times; the Keystone token is Nova's (`service` "
        "role), the JWT carries the same role.",
        "",
        *_table(["target", "accepted claims/s", "p50 / p99 ms", "5xx", "over-allocated"], rows),
        "",
        f"allot with Keystone tokens made {claims['keystone_share_of_jwt']:.0%} of its claims/s "
        "with JWTs (medians of the rounds): a cached token costs a hash and a lookup.",
        "",
        f"A new token ({first['tokens']} of them, each sent twice over one kept-alive "
        "connection, medians): Keystone's own validation took "
        f"{first['keystone_validation_ms']} ms from a client; allot answered the first request "
        f"in {first['allot']['first_request_ms']} ms and the second in "
        f"{first['allot']['cached_request_ms']} ms; Placement in "
        f"{first['placement']['first_request_ms']} and {first['placement']['cached_request_ms']}"
        f" ms. allot asked Keystone {first['allot_validations_per_new_token']} times per new "
        "token (its validations counter): the first request costs one Keystone round trip.",
    ]


def import_section(path: Path) -> list[str]:
    """Moving from Placement at cloud size (bench/import_placement.py), when recorded."""
    if not path.exists():
        return []
    figures = json.loads(path.read_text())
    data = figures["dataset"]
    return [
        "",
        "## Moving from Placement (bench/import_placement.py)",
        "",
        f"Recorded {figures['recorded']} at commit `{figures['commit']}`, on the machine above: "
        f"a Placement 16.0.0 database on this PostgreSQL (schema by `placement-manage db sync`), "
        f"filled in Placement's schema by bench/dataset.py in {data['seconds']} s: "
        f"{data['providers']:,} providers (computes with two NUMA children, sharing pools), "
        f"{data['consumers']:,} consumers, {data['allocations']:,} allocation rows.",
        "",
        *_table(
            ["command", "seconds", "peak resident MiB"],
            [
                ["`allot db import-placement`", figures["import_s"], figures["import_peak_mib"]],
                ["`allot db verify-import`", figures["verify_s"], figures["verify_peak_mib"]],
            ],
        ),
        "",
        f"Verdict: {figures['verdict']}. Peak memory is the command's own (wait4's rusage, the "
        "bench process kept small so the figure is not its size at fork). Targets: import under "
        "3 minutes, under 500 MiB.",
    ]


def cloud_scale_section(path: Path) -> list[str]:
    """allot and Placement on one cloud-size dataset (bench/cloud_scale.py), when recorded."""
    if not path.exists():
        return []
    f = json.loads(path.read_text())
    data, rows = f["dataset"], []
    for name, by_target in f["candidates"].items():
        a, p = by_target["allot"], by_target["placement"]
        rows.append([
            f"candidates, {name}, 8 clients", f"{a['p50_ms']} / {a['p99_ms']}",
            f"{p['p50_ms']} / {p['p99_ms']}",
            f"{a['p50_ms'] / p['p50_ms']:.3f} / {a['p99_ms'] / p['p99_ms']:.3f}",
        ])  # fmt: skip
    a, p = f["claims"]["allot"], f["claims"]["placement"]
    rows.append([
        "claims, 32 clients: claims/s, p99 ms", f"{a['accepted_per_s']}, {a['p99_ms']}",
        f"{p['accepted_per_s']}, {p['p99_ms']}",
        f"{a['accepted_per_s'] / p['accepted_per_s']:.1f}x, {a['p99_ms'] / p['p99_ms']:.3f}",
    ])  # fmt: skip
    pools = f["pool_claims"]
    for name in pools["allot"]:
        rows.append([f"one claim at a time, {name}: p50 ms", pools["allot"][name],
                     pools["placement"][name], ""])  # fmt: skip
    hot, empty = (pools["allot"][k] for k in pools["allot"])
    largest = max(f["allot_rss_mib"].values())
    large = f.get("at_100k_providers")
    at_large = []
    if large:
        at_large = [
            "",
            f"At {large['dataset']['providers']:,} providers ({large['dataset']['consumers']:,} "
            f"consumers, {large['dataset']['allocations']:,} allocations; recorded "
            f"{large['recorded']}, allot alone, `--large`), candidates at limit=10, 8 clients, "
            "p50 / p99: "
            + ", ".join(
                f"{name} {large[name]['p50_ms']} / {large[name]['p99_ms']} ms"
                for name in ("plain", "granular")
            )
            + f"; largest allot process {max(large['allot_rss_mib'].values())} MiB.",
        ]
    return [
        "",
        "## Cloud-scale data (bench/cloud_scale.py)",
        "",
        f"Recorded {f['recorded']} at commit `{f['commit']}`, on the machine above: "
        f"{data['providers']:,} providers, {data['consumers']:,} consumers and "
        f"{data['allocations']:,} allocation rows, built in Placement's schema in "
        f"{data['load_s']} s and imported into allot in {data['import_s']} s; allot (2 "
        "workers) and Placement 16.0.0 (gunicorn, 2 workers) on the same PostgreSQL.",
        "",
        *_table(["measure", "allot", "Placement", "allot / Placement"], rows),
        "",
        f"A claim on a pool holding 100,000 allocations took {hot / empty:.2f}x a claim on an "
        f"empty pool (p50s, allot). Largest allot process (peak resident memory): {largest} MiB.",
        *at_large,
        "",
        "Issue 20's targets:",
        "",
        *_table(["target", "measured", ""], _cloud_targets(f)),
        "",
        "Commands: `python -m bench.cloud_scale` (the side-by-side run, about 5 minutes), then "
        "`python -m bench.cloud_scale --large` (allot alone at 100,000 providers, about 2 "
        "minutes), then `python -m bench.report`.",
    ]


def _cloud_targets(f: dict[str, Any]) -> list[list[str]]:
    rows = []
    for name, by in f["candidates"].items():
        a, p = by["allot"], by["placement"]
        worst = max(a["p50_ms"] / p["p50_ms"], a["p99_ms"] / p["p99_ms"])
        rows.append([f"candidates, {name}: p50 and p99 at most 0.05x Placement's",
                     f"{worst:.3f}x at worst", _met(worst <= 0.05)])  # fmt: skip
    a, p = f["claims"]["allot"], f["claims"]["placement"]
    ratio, tail = a["accepted_per_s"] / p["accepted_per_s"], a["p99_ms"] / p["p99_ms"]
    rows.append(["claims at 32 clients: at least 10x Placement's claims/s", f"{ratio:.1f}x",
                 _met(ratio >= 10)])  # fmt: skip
    rows.append(["claims at 32 clients: p99 at most 0.2x", f"{tail:.3f}x", _met(tail <= 0.2)])
    hot, empty = f["pool_claims"]["allot"].values()
    rows.append(["claim on a pool of 100,000 allocations: p50 within 1.2x of an empty one",
                 f"{hot / empty:.2f}x", _met(hot / empty <= 1.2)])  # fmt: skip
    large = f.get("at_100k_providers")
    if large:
        p50 = max(large[name]["p50_ms"] for name in ("plain", "granular"))
        rows.append(["at 100,000 providers, limit=10: candidates p50 under 250 ms",
                     f"{p50} ms at worst", _met(p50 < 250)])  # fmt: skip
    rss = max([*f["allot_rss_mib"].values(), *(large or {}).get("allot_rss_mib", {}).values()])
    rows.append(["every allot process under 200 MiB resident", f"{rss} MiB peak", _met(rss < 200)])
    return rows


def _load(value: Any) -> str:
    return "?" if not value else "/".join(f"{x:.1f}" for x in value)


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {"allot": "tab:blue", "placement": "tab:orange"}
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.8))
    for name, data in results["targets"].items():
        xs = [f["clients"] for f in data["claim_by_clients"]]
        left.plot(
            xs,
            [f["accepted_per_s"] for f in data["claim_by_clients"]],
            "o-",
            color=colours.get(name),
            label=name,
        )
        ps = [f["providers"] for f in data["claim_by_providers"]]
        right.plot(
            ps,
            [f["p50_ms"] for f in data["claim_by_providers"]],
            "o-",
            color=colours.get(name),
            label=f"{name} p50",
        )
        right.plot(
            ps,
            [f["p99_ms"] for f in data["claim_by_providers"]],
            "s--",
            color=colours.get(name),
            label=f"{name} p99",
        )
    pg = results["pgbench"]
    left.plot(
        [pg["clients"]],
        [pg["tps"]],
        "k*",
        markersize=12,
        label=f"pgbench ceiling ({pg['tps']:.0f} tx/s)",
    )
    left.set(
        xscale="log",
        yscale="log",
        xlabel="concurrent clients",
        ylabel="accepted claims per second",
        title="Claims: throughput against concurrency",
    )
    left.set_xticks([f["clients"] for f in results["targets"]["allot"]["claim_by_clients"]])
    left.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
    right.set(
        xscale="log",
        yscale="log",
        xlabel="providers the claims land on",
        ylabel="latency, ms",
        title=f"Claims at {results['settings']['main_clients']} clients: latency",
    )
    for axis in (left, right):
        axis.grid(True, which="both", alpha=0.3)
        axis.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write(results: dict[str, Any], out: Path) -> None:
    (out / "RESULTS.md").write_text(markdown(results))
    plot(results, out / "claims.png")


if __name__ == "__main__":
    here = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent
    write(json.loads((here / "results.json").read_text()), here)
