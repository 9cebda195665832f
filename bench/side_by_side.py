"""allot and real Placement side by side in one run, with pgbench's ceiling for the same work.

- allot: `allot serve --workers 2` on PostgreSQL (`allot_bench`), production settings, rate
  limits on (a limit no client reaches) and counted in Redis as in a deployment;
- Placement 16.0.0: gunicorn with 2 sync workers, noauth2, on the same PostgreSQL
  (`placement_bench`), started by the shared tool `../shared/tools/placement/start.sh`;
- pgbench: `bench/pgbench_allocation.sql` (one allocation write as the database sees it) at
  the same concurrency, against allot's schema: the most the database could do.

Scenarios run interleaved (allot, then Placement, per step) so both see the same machine.
Writes bench/results.json, then bench/RESULTS.md and bench/claims.png (bench/report.py).

    .venv/bin/pip install -e '.[bench]'
    .venv/bin/python -m bench.side_by_side           # a few minutes; it loads the machine
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import uvloop

from bench import load, report
from bench.load import Ledger, Target

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
ALLOT = str(Path(sys.executable).with_name("allot"))
PLACEMENT_TOOLS = Path(os.environ.get("PLACEMENT_TOOLS", ROOT.parent / "shared/tools/placement"))
PLACEMENT_VENV = Path(os.environ.get("PLACEMENT_VENV", "/tmp/placement-venv"))
PLACEMENT_RUN = Path(tempfile.gettempdir()) / "allot-bench-placement"
PG = {"PGHOST": "127.0.0.1", "PGPORT": "5432", "PGUSER": "postgres"}


def sh(*args: str, env: dict[str, str] | None = None, timeout: float = 600) -> str:
    result = subprocess.run(
        args,
        env={**os.environ, **PG, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: {result.stderr[-2000:]}")
    return result.stdout.strip()


def psql(database: str, sql: str) -> str:
    return sh("psql", "-d", database, "-Atc", sql)


def recreate(database: str) -> None:
    psql("postgres", f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    psql("postgres", f'CREATE DATABASE "{database}"')


def rss_mib(pid: int) -> dict[str, float]:
    """Peak resident memory (since each started) of a process and its descendants, MiB, by
    role: the most each held at any moment of the run, not only at its end."""
    out: dict[str, float] = {}

    def visit(p: int, role: str) -> None:
        try:
            status = Path(f"/proc/{p}/status").read_text()
            children = Path(f"/proc/{p}/task/{p}/children").read_text().split()
            cmdline = Path(f"/proc/{p}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            return
        if "resource_tracker" in cmdline:
            return  # multiprocessing's helper, not a server process
        kib = next(int(ln.split()[1]) for ln in status.splitlines() if ln.startswith("VmHWM:"))
        out[f"{role} {p}"] = round(kib / 1024, 1)
        for child in children:
            visit(int(child), "worker")

    visit(pid, "main")
    return out


def cpu_jiffies() -> tuple[int, int]:
    """(stolen, total) CPU time of this machine since boot: steal is what the hypervisor gave
    to other guests while this one had work to run."""
    fields = [int(f) for f in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return fields[7], sum(fields[:8])


def machine() -> dict[str, Any]:
    cpu = next(
        (
            ln.split(":", 1)[1].strip()
            for ln in Path("/proc/cpuinfo").read_text().splitlines()
            if ln.startswith("model name")
        ),
        platform.processor(),
    )
    mem_kib = int(Path("/proc/meminfo").read_text().split()[1])
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "postgresql": psql("postgres", "SHOW server_version"),
        "allot_commit": sh("git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"),
        "placement": sh(
            str(PLACEMENT_VENV / "bin/python"),
            "-c",
            "import importlib.metadata as m; print(m.version('openstack-placement'))",
        ),
        "load_average_at_start": os.getloadavg(),
        "cpu_jiffies_at_start": cpu_jiffies(),
    }


class Allot:
    def __init__(self, port: int, database: str, workers: int, redis: str | None) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.database = database
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("ALLOT_")},
            "ALLOT_ENV": "production",
            "ALLOT_DATABASE_URL": f"postgresql+asyncpg://postgres@127.0.0.1:5432/{database}",
            "ALLOT_AUTH_JWT_SECRET": secrets.token_urlsafe(48),
            "ALLOT_RATE_LIMIT": "1000000/second",
            "ALLOT_RATE_LIMIT_ANON": "1000000/second",
            "ALLOT_RATE_LIMIT_STORAGE": redis or "memory://",
            # Placement under start.sh logs warnings and errors only: the same here.
            "ALLOT_LOG_LEVEL": "WARNING",
        }
        self.env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        self.command = [ALLOT, "serve", "--port", str(port), "--workers", str(workers)]
        self.log = Path(tempfile.gettempdir()) / f"allot-bench-{port}.log"
        self.popen: subprocess.Popen[bytes] | None = None

    def start(self) -> str:
        recreate(self.database)
        sh(ALLOT, "db", "upgrade", env=self.env)
        with self.log.open("wb") as out:
            self.popen = subprocess.Popen(
                self.command,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        _wait_http(f"{self.url}/readyz", self.popen)
        return sh(
            ALLOT, "token", "--roles", "admin", "--project", "bench", "--ttl", "2h", env=self.env
        )

    def stop(self) -> None:
        if self.popen and self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)


class Placement:
    def __init__(self, port: int, database: str, workers: int) -> None:
        self.port, self.database, self.workers = port, database, workers
        self.url = f"http://127.0.0.1:{port}"
        self.env = {
            "PORT": str(port),
            "DB": database,
            "WORKERS": str(workers),
            "RUN_DIR": str(PLACEMENT_RUN),
            "PLACEMENT_VENV": str(PLACEMENT_VENV),
        }

    def start(self) -> None:
        if _port_busy(self.port):
            # Someone else's Placement holds the usual port: take a free one of ours instead.
            self.port = next(p for p in range(8690, 8700) if not _port_busy(p))
            self.url = f"http://127.0.0.1:{self.port}"
            self.env["PORT"] = str(self.port)
        if not (PLACEMENT_VENV / "bin/gunicorn").exists():
            sh("bash", str(PLACEMENT_TOOLS / "install.sh"), timeout=1200)
        sh("bash", str(PLACEMENT_TOOLS / "start.sh"), env={**self.env, "FRESH": "1"})

    @property
    def pid(self) -> int:
        return int((PLACEMENT_RUN / f"placement-{self.port}.pid").read_text())

    def stop(self) -> None:
        sh("bash", str(PLACEMENT_TOOLS / "stop.sh"), env=self.env)


def _port_busy(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _wait_http(url: str, popen: subprocess.Popen[bytes]) -> None:
    for _ in range(600):
        if popen.poll() is not None:
            raise RuntimeError(f"{url}: the server exited")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} never became ready")


def redis_url() -> str | None:
    """Redis on its standard port, as docker-compose.yml has it; memory:// when absent."""
    if (
        shutil.which("redis-cli")
        and subprocess.run(
            ["redis-cli", "-h", "127.0.0.1", "ping"], capture_output=True, text=True
        ).stdout.strip()
        == "PONG"
    ):
        return "redis://127.0.0.1:6379/11"
    return None


def pgbench(database: str, clients: int, seconds: float) -> dict[str, Any]:
    ids = psql(database, "SELECT min(id), max(id) FROM resource_providers").split("|")
    project = psql(database, "SELECT min(id) FROM projects")
    user = psql(database, "SELECT min(id) FROM users")
    consumer_type = psql(database, "SELECT min(id) FROM consumer_types")
    command = [
        "pgbench",
        "-n",
        "-c",
        str(clients),
        "-j",
        str(min(clients, 2)),
        "-T",
        str(int(seconds)),
        "-D",
        f"rp_min={ids[0]}",
        "-D",
        f"rp_max={ids[1]}",
        "-D",
        f"project={project}",
        "-D",
        f"user={user}",
        "-D",
        f"consumer_type={consumer_type}",
        "-f",
        str(BENCH / "pgbench_allocation.sql"),
        database,
    ]
    out = sh(*command, timeout=seconds + 120)
    tps = float(next(ln for ln in out.splitlines() if ln.startswith("tps")).split()[2])
    latency = next(ln for ln in out.splitlines() if ln.startswith("latency average"))
    return {
        "clients": clients,
        "tps": round(tps, 1),
        "latency_avg_ms": float(latency.split()[3]),
        "command": " ".join(command),
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {"machine": machine(), "settings": vars(args).copy()}
    allot = Allot(args.allot_port, args.allot_db, args.workers, redis_url())
    placement = Placement(args.placement_port, args.placement_db, args.workers)
    results["settings"]["allot_rate_limit_storage"] = allot.env["ALLOT_RATE_LIMIT_STORAGE"]
    try:
        token = allot.start()
        placement.start()
        targets = [Target.allot(allot.url, token), Target.placement(placement.url)]
        pids = {
            "allot": lambda: allot.popen.pid if allot.popen else 0,
            "placement": lambda: placement.pid,
        }
        await _scenarios(args, targets, pids, results)
        results["pgbench"] = pgbench(args.allot_db, args.main_clients, args.seconds * 2)
        if args.candidates and (BENCH / "candidates.py").exists():
            try:
                results["candidates"] = _candidates(args, allot, placement, token)
            except (RuntimeError, subprocess.TimeoutExpired) as exc:
                # The claim figures stand on their own; say why candidates are missing.
                results["candidates_error"] = str(exc)[-500:]
    finally:
        allot.stop()
        placement.stop()
    results["machine"]["load_average_at_end"] = os.getloadavg()
    (stolen0, total0), (stolen1, total1) = (
        results["machine"].pop("cpu_jiffies_at_start"),
        cpu_jiffies(),
    )
    results["machine"]["cpu_steal_share"] = round((stolen1 - stolen0) / max(total1 - total0, 1), 3)
    return results


async def _scenarios(
    args: argparse.Namespace,
    targets: list[Target],
    pids: dict[str, Any],
    results: dict[str, Any],
) -> None:
    by_target: dict[str, dict[str, Any]] = {t.name: {} for t in targets}
    results["targets"] = by_target
    providers: dict[str, list[str]] = {}
    ledgers = {t.name: Ledger() for t in targets}
    largest = max(args.providers)
    for t in targets:
        providers[t.name], by_target[t.name]["setup"] = await load.setup(t, largest, 32, "bench")
        _say(t.name, "setup", by_target[t.name]["setup"])

    # Throughput against concurrency, claims spread over a fixed set of providers.
    for clients in args.concurrency:
        for t in targets:
            subset = providers[t.name][: args.sweep_providers]
            figures = await load.claim(t, subset, clients, args.seconds, ledgers[t.name])
            by_target[t.name].setdefault("claim_by_clients", []).append(figures)
            _say(t.name, f"claim c={clients}", figures)

    # Latency against the number of providers the claims land on, at the main concurrency.
    for count in args.providers:
        for t in targets:
            subset = providers[t.name][:count]
            figures = await load.claim(t, subset, args.main_clients, args.seconds, ledgers[t.name])
            by_target[t.name].setdefault("claim_by_providers", []).append(figures)
            _say(t.name, f"claim providers={count}", figures)

    for t in targets:
        by_target[t.name]["rss_mib_after_claims"] = rss_mib(pids[t.name]())
        by_target[t.name]["claim_check"] = await load.check(t, providers[t.name], ledgers[t.name])
        _say(t.name, "check", by_target[t.name]["claim_check"])
    for t in targets:
        figures = await load.contention(t, args.main_clients, 50, "contention")
        by_target[t.name]["contention"] = figures
        _say(t.name, "contention", figures)
    for t in targets:
        figures = await load.churn(
            t, providers[t.name], args.main_clients, args.seconds, ledgers[t.name]
        )
        figures["check"] = await load.check(t, providers[t.name], ledgers[t.name])
        by_target[t.name]["churn"] = figures
        _say(t.name, "churn", figures)


def _candidates(
    args: argparse.Namespace, allot: Allot, placement: Placement, token: str
) -> list[dict[str, Any]]:
    """The candidates engineer's scenario (bench/candidates.py) on its own dataset."""
    out = Path(tempfile.gettempdir()) / "allot-bench-candidates.jsonl"
    out.unlink(missing_ok=True)
    for database in (args.allot_db, args.placement_db):
        sh(
            sys.executable,
            "-m",
            "bench.dataset",
            "--dsn",
            f"postgresql://postgres@127.0.0.1:5432/{database}",
            "--providers",
            str(args.candidates),
            env={"PYTHONPATH": str(ROOT)},
        )
    sh(
        sys.executable,
        "-m",
        "bench.candidates",
        "--providers",
        str(args.candidates),
        "--target",
        f"allot={allot.url}",
        "--allot-token",
        token,
        "--target",
        f"placement={placement.url}",
        "--requests",
        "20",
        "--seconds",
        "10",
        "--json",
        str(out),
        env={"PYTHONPATH": str(ROOT)},
        timeout=1800,
    )
    return [json.loads(line) for line in out.read_text().splitlines() if line.strip()]


def _say(target: str, step: str, figures: dict[str, Any]) -> None:
    keys = ("accepted_per_s", "providers_per_s", "p50_ms", "p99_ms", "status_409", "status_5xx")
    shown = {k: figures[k] for k in keys if k in figures}
    print(f"{target:9} {step:22} {shown or figures}", flush=True)


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--allot-port", type=int, default=8601)
    parser.add_argument("--placement-port", type=int, default=8780)
    parser.add_argument("--allot-db", default="allot_bench")
    parser.add_argument("--placement-db", default="placement_bench")
    parser.add_argument("--workers", type=int, default=2, help="server processes, both sides")
    parser.add_argument("--seconds", type=float, default=6.0, help="per claim/churn step")
    parser.add_argument("--concurrency", type=_ints, default=[1, 8, 16, 32, 64])
    parser.add_argument("--main-clients", type=int, default=32)
    parser.add_argument("--sweep-providers", type=int, default=100)
    parser.add_argument("--providers", type=_ints, default=[10, 100, 1000])
    parser.add_argument("--candidates", type=int, default=1000, help="providers; 0 skips")
    parser.add_argument("--out", type=Path, default=BENCH)
    args = parser.parse_args()
    started = time.time()
    # uvloop: the load generator shares the cores with both servers; its loop costs it less.
    results = uvloop.run(run(args))
    results["duration_s"] = round(time.time() - started)
    results["command"] = "python -m bench.side_by_side " + " ".join(sys.argv[1:])
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    report.write(results, args.out)
    print(f"wrote {args.out / 'RESULTS.md'} and {args.out / 'claims.png'}")


if __name__ == "__main__":
    main()
