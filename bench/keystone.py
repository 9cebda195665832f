"""What Keystone tokens cost: claims at 32 clients with Keystone tokens (cached) beside JWTs,
and beside Placement 16.0.0 validating the same Keystone's tokens with keystonemiddleware;
and what the first request of a new token costs, against a bare Keystone validation.

    ALLOT_TEST_DATABASE_URL=postgresql+asyncpg://postgres@127.0.0.1:5432/test \\
        python -m bench.keystone          # writes bench/results/keystone.json

Real Keystone 30.0.0 (../shared/tools/keystone), allot with 2 workers, Placement under
gunicorn with 2 workers and `[api] auth_strategy = keystone` (its `[keystone_authtoken]` with
the same Keystone and an in-process token cache, as allot's), both on this PostgreSQL. The
targets alternate round by round so each sees the same machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from bench import load
from tests.concurrency import servers
from tests.conftest import mint
from tests.deployment.topology import free_port
from tests.keystone_server import Keystone, User
from tests.placement_server import create_database, drop_database, placement

HERE = Path(__file__).resolve().parent
PORTS = range(8950, 9000)
PLACEMENT_DB = "placement_bench_keystone"


@contextmanager
def placement_with_keystone(keystone: Keystone, user: User, workdir: Path) -> Iterator[str]:
    """Placement with keystonemiddleware in front, validating tokens as `user`."""
    database = create_database("postgresql", PLACEMENT_DB)
    authtoken = (
        f"www_authenticate_uri = {keystone.url}\nauth_url = {keystone.url}\n"
        f"auth_type = password\nusername = {user.name}\npassword = {user.password}\n"
        "project_name = service\nuser_domain_name = Default\nproject_domain_name = Default\n"
        "token_cache_time = 300\n"
    )
    try:
        with placement(database, workdir, workers=2, keystone=authtoken) as url:
            yield url
    finally:
        drop_database("postgresql", PLACEMENT_DB)


def _keystone_target(name: str, url: str, token: str) -> load.Target:
    # keystoneauth sends a Keystone token as X-Auth-Token.
    return load.Target(name, url, {"x-auth-token": token})


async def claims(
    targets: list[load.Target], rounds: int, clients: int, seconds: float
) -> dict[str, Any]:
    providers: dict[str, list[str]] = {}
    ledgers = {t.name: load.Ledger() for t in targets}
    runs: dict[str, list[dict[str, Any]]] = {t.name: [] for t in targets}
    for t in targets:
        providers[t.name], _ = await load.setup(t, 100, clients, f"ks-{t.name}")
    for _ in range(rounds):
        for t in targets:
            result = await load.claim(t, providers[t.name], clients, seconds, ledgers[t.name])
            runs[t.name].append(result)
            print(t.name, result["accepted_per_s"], result["p50_ms"], result["p99_ms"], flush=True)
    summary: dict[str, Any] = {"clients": clients, "seconds": seconds, "rounds": rounds}
    for t in targets:
        check = await load.check(t, providers[t.name], ledgers[t.name])
        results = runs[t.name]
        summary[t.name] = {
            "claims_per_s": [r["accepted_per_s"] for r in results],
            "median_claims_per_s": statistics.median(r["accepted_per_s"] for r in results),
            "p50_ms": [r["p50_ms"] for r in results],
            "p99_ms": [r["p99_ms"] for r in results],
            "status_5xx": sum(r.get("status_5xx", 0) for r in results),
            "over_allocated": check["over_allocated"],
        }
    jwt = summary["allot-jwt"]["median_claims_per_s"]
    summary["keystone_share_of_jwt"] = round(
        summary["allot-keystone"]["median_claims_per_s"] / jwt, 3
    )
    return summary


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


def first_requests(keystone: Keystone, user: User, urls: dict[str, str], count: int) -> Any:
    """Per server: a new token's first request, then its second, over one kept-alive
    connection (one worker, one cache); and Keystone's own validation round trip."""
    service = keystone.user_token(user)
    out: dict[str, Any] = {"tokens": count}
    with httpx.Client(timeout=30) as direct:
        bare = []
        for _ in range(count):
            token = keystone.user_token(user)
            started = time.perf_counter()
            answer = direct.get(
                f"{keystone.url}/auth/tokens?nocatalog=1",
                headers={"X-Auth-Token": service, "X-Subject-Token": token},
            )
            bare.append(time.perf_counter() - started)
            assert answer.status_code == 200
        out["keystone_validation_ms"] = _ms(statistics.median(bare))
    for name, url in urls.items():
        first, second = [], []
        version = {"openstack-api-version": "placement 1.39"}
        with httpx.Client(base_url=url, timeout=30, headers=version) as client:
            for _ in range(count):
                headers = {"x-auth-token": keystone.user_token(user)}
                for into in (first, second):
                    started = time.perf_counter()
                    answer = client.get("/resource_classes/VCPU", headers=headers)
                    into.append(time.perf_counter() - started)
                    assert answer.status_code == 200, answer.text
        out[name] = {
            "first_request_ms": _ms(statistics.median(first)),
            "cached_request_ms": _ms(statistics.median(second)),
            "first_minus_cached_ms": _ms(statistics.median(first) - statistics.median(second)),
        }
    return out


def validations_counted(url: str) -> float:
    headers = {"authorization": f"Bearer {mint(roles=['admin'], project='bench')}"}
    text = httpx.get(f"{url}/metrics", headers=headers, timeout=10).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("allot_keystone_validations_total{")
    )


async def run(args: argparse.Namespace) -> dict[str, Any]:
    # Kept after the run, logs and all, for a look; made anew by the next run.
    work = Path(tempfile.gettempdir()) / "allot-bench-keystone"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    if True:
        keystone = Keystone(work / "keystone", port=free_port())
        keystone.start(fresh=True)
        try:
            allot_user = keystone.user("allot", "service", ["service"])
            placement_user = keystone.user("placement", "service", ["service"])
            nova = keystone.user("nova", "service", ["service"])
            settings = {
                "ALLOT_POLICY": "placement",
                "ALLOT_AUTH_KEYSTONE_URL": keystone.url,
                "ALLOT_AUTH_KEYSTONE_USERNAME": allot_user.name,
                "ALLOT_AUTH_KEYSTONE_PASSWORD": allot_user.password,
            }
            async with servers.own_postgres("keystone_bench") as database:
                with (
                    servers.allot_serve(
                        database, workers=2, log=work / "allot.log", ports=PORTS,
                        pool_size=5, settings=settings,
                    ) as allot,
                    placement_with_keystone(keystone, placement_user, work) as placement,
                ):  # fmt: skip
                    token = keystone.user_token(nova)
                    targets = [
                        load.Target.allot(allot, mint(roles=["service"], project="service"),
                                          name="allot-jwt"),
                        _keystone_target("allot-keystone", allot, token),
                        _keystone_target("placement-keystone", placement, token),
                    ]  # fmt: skip
                    claimed = await claims(targets, args.rounds, args.clients, args.seconds)
                    before = validations_counted(allot)
                    first = first_requests(
                        keystone, nova, {"allot": allot, "placement": placement}, args.tokens
                    )
                    first["allot_validations_per_new_token"] = (
                        validations_counted(allot) - before
                    ) / args.tokens
        finally:
            keystone.stop()
    return {"claims": claimed, "first_request": first}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--tokens", type=int, default=30)
    args = parser.parse_args()
    results = {
        "recorded": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "commit": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        ).stdout.strip(),
        **asyncio.run(run(args)),
    }
    out = HERE / "results" / "keystone.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
