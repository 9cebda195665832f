"""The load tool measures what it says and its checks catch what they must.

`bench/load.py` runs here against the app in-process (on SQLite and PostgreSQL) with a few
clients for a moment: the recorded results are only worth something if the scenarios still
speak the API correctly and the over-allocation check reads usage back faithfully.
"""

from __future__ import annotations

import tempfile
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from bench import load, report
from bench.load import Ledger, Target
from tests.concurrency.servers import allot_serve

PORTS = range(8300, 8350)  # this suite's port range on the shared machine


@pytest.fixture
def target(app: FastAPI, tokens: dict[str, str]) -> Target:
    transport = httpx.ASGITransport(app=app)
    return Target("allot", "http://127.0.0.1", {"x-auth-token": tokens["admin"]}, transport)


async def test_claims_are_counted_and_read_back_exactly(target: Target) -> None:
    providers, setup = await load.setup(target, 3, 2, "bench-test")
    assert setup["providers"] == 3 and setup["status_5xx"] == 0
    ledger = Ledger()
    figures = await load.claim(target, providers, 4, seconds=30, ledger=ledger, max_claims=12)
    assert figures["accepted"] == 12 == len(ledger.consumers)
    assert figures["statuses"] == {"204": 12}
    assert await load.check(target, providers, ledger) == {
        "providers": 3,
        "over_allocated": 0,
        "usage_mismatches": 0,
    }

    churn = await load.churn(target, providers, 3, seconds=30, ledger=ledger)
    assert churn["moves"] + churn["deletes"] == 12 and churn["status_5xx"] == 0
    assert len(ledger.consumers) == churn["moves"]
    check = await load.check(target, providers, ledger)
    assert check["usage_mismatches"] == 0 and check["over_allocated"] == 0


async def test_a_real_run_goes_over_tcp_to_a_served_allot(tokens: dict[str, str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        database_url = f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}"
        with allot_serve(database_url, workers=1, log=Path(tmp) / "serve.log", ports=PORTS) as base:
            target = Target.allot(base, tokens["admin"])
            providers, _ = await load.setup(target, 2, 2, "bench-tcp")
            ledger = Ledger()
            figures = await load.claim(
                target, providers, 3, seconds=30, ledger=ledger, max_claims=9
            )
            nowhere = [str(uuid.uuid4())]  # no such provider
            unknown = await load.claim(
                target, nowhere, 1, seconds=30, ledger=Ledger(), max_claims=1
            )
            check = await load.check(target, providers, ledger)
            # A server that closes each connection after answering (as gunicorn's sync workers
            # do): every request goes out on a new one, and none is lost.
            closing = Target("allot", base, {**target.headers, "connection": "close"})
            reconnected = await load.claim(
                closing, providers, 2, seconds=30, ledger=Ledger(), max_claims=6
            )
    assert reconnected["statuses"] == {"204": 6} and reconnected["transport_errors"] == 0
    assert figures["statuses"] == {"204": 9} and len(ledger.consumers) == 9
    assert check == {"providers": 2, "over_allocated": 0, "usage_mismatches": 0}
    # An answer that is an error is counted by its code, from the body the client read.
    assert unknown["statuses"] == {"400": 1}
    assert unknown["codes"] == {"placement.resource_provider.not_found": 1}


async def test_the_check_notices_a_claim_the_clients_were_not_told_about(target: Target) -> None:
    providers, _ = await load.setup(target, 1, 1, "bench-test")
    told = Ledger()
    await load.claim(target, providers, 1, seconds=30, ledger=Ledger(), max_claims=2)
    await load.claim(target, providers, 1, seconds=30, ledger=told, max_claims=1)
    check = await load.check(target, providers, told)
    assert check["usage_mismatches"] == 1


async def test_contention_fills_two_small_providers_exactly(target: Target) -> None:
    figures = await load.contention(target, clients=6, capacity=4, prefix="bench-contention")
    assert figures["filled"] == 8 == figures["capacity"]
    assert figures["codes"].get(load.CAPACITY_CODE, 0) >= 1, "told when full"
    assert figures["check"]["over_allocated"] == 0
    assert figures["check"]["usage_mismatches"] == 0


def _two_servers() -> dict[str, Any]:
    """Figures of a side-by-side run: allot at 900 claims/s, Placement at 100."""

    def claims(rate: float, p99: float) -> dict[str, object]:
        return {"clients": 32, "providers": 100, "accepted_per_s": rate, "p50_ms": p99 / 2,
                "p95_ms": p99, "p99_ms": p99, "status_409": 0, "status_5xx": 0,
                "transport_errors": 0}  # fmt: skip

    check = {"providers": 100, "over_allocated": 0, "usage_mismatches": 0}
    side = {
        "setup": {"providers": 100, "providers_per_s": 50.0},
        "contention": {"filled": 100, "capacity": 100, "accepted_per_s": 40.0, "p99_ms": 9.0,
                       "codes": {}, "status_5xx": 0, "check": check},
        "churn": {"moves": 5, "deletes": 5, "accepted_per_s": 10.0, "p99_ms": 9.0,
                  "status_5xx": 0, "check": check},
        "claim_check": check,
        "rss_mib_after_claims": {"main 1": 90.0},
    }  # fmt: skip
    results = {
        "machine": {"cpu": "test", "cores": 2, "memory_gib": 1, "kernel": "k", "python": "3",
                    "postgresql": "15", "allot_commit": "abc", "placement": "16.0.0",
                    "load_average_at_start": [1.0, 1.0, 1.0]},
        "settings": {"workers": 2, "main_clients": 32, "sweep_providers": 100, "seconds": 1},
        "targets": {
            "allot": {**side, "claim_by_clients": [claims(900, 50)],
                      "claim_by_providers": [claims(900, 50)]},
            "placement": {**side, "claim_by_clients": [claims(100, 100)],
                          "claim_by_providers": [claims(100, 100)]},
        },
        "pgbench": {"clients": 32, "tps": 3000.0, "latency_avg_ms": 10.0, "command": "pgbench"},
    }  # fmt: skip
    return results


def test_the_report_states_each_target_as_met_or_not() -> None:
    results = _two_servers()
    text = report.markdown(results)
    assert "| accepted claims/s | 900 | 100 | 9.0x | >= 8x | met |" in text
    assert "| p99 ms | 50 | 100 | 0.50 | <= 0.25 | **not met** |" in text
    assert "| share of the pgbench ceiling | 30% |" in text
    assert "claims/s ratios 9.0x, 9.0x; p99 ratios 0.50, 0.50." in text


def test_the_report_says_how_much_cpu_the_host_took_during_the_run() -> None:
    results = _two_servers()
    results["machine"]["cpu_steal_share"] = 0.12
    assert "gave to other guests during the run (steal): 12%" in report.markdown(results)


def test_the_report_names_the_server_that_over_allocated() -> None:
    results = _two_servers()
    placement = results["targets"]["placement"]
    over = {"providers": 2, "over_allocated": 2, "usage_mismatches": 0}
    placement["contention"] = {**placement["contention"], "check": over}
    text = report.markdown(results)
    assert "over-allocated provider inventories after claim, contention and churn **0 / 2**" in text
