"""The container image's figures: its size (and what takes the room), the time from a cold
`podman run` to ready, and the time from SIGTERM to exit under load.

    python -m bench.container            # writes bench/results/container.json

Podman builds and runs the image exactly as the suite does (tests/deployment/containers.py:
a base from Debian's packages, runc); the server uses PostgreSQL on the host's network.
bench/report.py puts the figures in bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from tests.conftest import TEST_SECRET, mint
from tests.deployment import containers as c

HERE = Path(__file__).resolve().parent
PORT = 8000  # the default command's, which the HEALTHCHECK probes
HARDENED = ["--read-only", "--tmpfs", "/tmp", "--cap-drop", "ALL", "--network", "host"]
HARDENED += ["--security-opt", "no-new-privileges"]


def _env(database: str) -> list[str]:
    return c.host_env(
        ALLOT_DATABASE_URL=database,
        ALLOT_AUTH_JWT_SECRET=TEST_SECRET,
        ALLOT_RATE_LIMIT="off",
        ALLOT_LOG_LEVEL="WARNING",
    )


def _sizes() -> dict[str, Any]:
    def image_size(name: str) -> int:
        return int(c.podman("image", "inspect", "--format", "{{.Size}}", name).stdout)

    listing = c.podman(
        "run",
        "--rm",
        *c.RUN_LIMITS,
        "--entrypoint",
        "sh",
        c.IMAGE,
        "-c",
        "du -sk /opt/allot; du -sk /opt/allot/lib/python3*/site-packages/* | sort -n | tail -6",
    ).stdout.splitlines()
    venv_kib = int(listing[0].split()[0])
    largest = [
        {"package": Path(line.split()[1]).name, "mib": round(int(line.split()[0]) / 1024, 1)}
        for line in reversed(listing[1:])
    ]
    return {
        "image_mib": round(image_size(c.IMAGE) / 2**20, 1),
        "base_mib": round(image_size(c.BASE_IMAGE) / 2**20, 1),
        "virtualenv_mib": round(venv_kib / 1024, 1),
        "largest_packages": largest,
    }


def _cold_start(database: str) -> float:
    started = time.monotonic()
    with c.container(*HARDENED, *_env(database), c.IMAGE, name="allot-bench-start") as name:
        c.wait_ready(f"http://127.0.0.1:{PORT}", name, timeout=120)
        return time.monotonic() - started


async def _load(stop: asyncio.Event, counts: dict[str, int]) -> None:
    headers = {"x-auth-token": mint(roles=["admin"], project="bench")}
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{PORT}", headers=headers) as client:
        while not stop.is_set():
            try:
                status = (await client.get("/resource_providers")).status_code
                counts["5xx" if status >= 500 else "answered"] += 1
            except httpx.TransportError:
                counts["refused"] += 1  # sent after the server stopped accepting
                await asyncio.sleep(0.05)


async def _stop_under_load(database: str, clients: int) -> dict[str, Any]:
    with c.container(*HARDENED, *_env(database), c.IMAGE, name="allot-bench-stop") as name:
        c.wait_ready(f"http://127.0.0.1:{PORT}", name, timeout=120)
        stop = asyncio.Event()
        counts = {"answered": 0, "5xx": 0, "refused": 0}
        load = [asyncio.create_task(_load(stop, counts)) for _ in range(clients)]
        await asyncio.sleep(3)
        signalled = time.monotonic()
        await asyncio.to_thread(c.podman, "kill", "--signal", "TERM", name)
        code = await asyncio.to_thread(c.exit_code, name, 120)
        stopped = time.monotonic() - signalled
        stop.set()
        await asyncio.gather(*load)
        return {"seconds": round(stopped, 2), "exit_code": code, **counts}


async def _database(url: str, create: bool) -> None:
    dsn = url.replace("postgresql+asyncpg://", "postgresql://").rsplit("/", 1)
    admin = await asyncpg.connect(f"{dsn[0]}/postgres")
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{dsn[1]}" WITH (FORCE)')
        if create:
            await admin.execute(f'CREATE DATABASE "{dsn[1]}"')
    finally:
        await admin.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--database-url",
        default="postgresql+asyncpg://postgres@127.0.0.1:5432/allot_container_bench",
    )
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--clients", type=int, default=32)
    args = parser.parse_args()

    build_started = time.monotonic()
    c.build_image()
    build_s = time.monotonic() - build_started
    asyncio.run(_database(args.database_url, create=True))
    try:
        migrated = c.podman(
            "run",
            "--rm",
            *c.RUN_LIMITS,
            "--network",
            "host",
            *_env(args.database_url),
            c.IMAGE,
            "db",
            "upgrade",
        )
        assert "database at head" in migrated.stdout
        starts = [_cold_start(args.database_url) for _ in range(args.runs)]
        stops = [
            asyncio.run(_stop_under_load(args.database_url, args.clients))
            for _ in range(max(3, args.runs // 2))
        ]
    finally:
        asyncio.run(_database(args.database_url, create=False))
    results = {
        "recorded": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "commit": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        ).stdout.strip(),
        "podman": c.podman("version", "--format", "{{.Client.Version}}").stdout.strip(),
        "build_s": round(build_s, 1),
        **_sizes(),
        "cold_start_s": {
            "median": round(statistics.median(starts), 2),
            "min": round(min(starts), 2),
            "max": round(max(starts), 2),
            "runs": len(starts),
        },
        "sigterm_under_load": {"clients": args.clients, "runs": stops},
    }
    out = HERE / "results" / "container.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
