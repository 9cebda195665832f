"""Moving from Placement at cloud size: import and verify time, and the importer's memory.

    python -m bench.import_placement          # writes bench/results/import.json

A Placement 16.0.0 database on this PostgreSQL (its schema from `placement-manage db sync`,
its standard traits from one request to a running Placement), filled directly in Placement's
schema by bench/dataset.py: 10,000 providers (computes with two NUMA children each, sharing
pools), 300,000 consumers, about 900,000 allocation rows. Then `allot db import-placement`
into an empty allot database, and `allot db verify-import`, each timed; the importer's peak
resident memory is what the kernel reports for the child process (ru_maxrss).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.side_by_side import psql, recreate
from tests.placement_server import create_database, drop_database, with_standard_traits

HERE = Path(__file__).resolve().parent
ALLOT = str(Path(sys.executable).with_name("allot"))
SOURCE, TARGET = "placement_import_bench", "allot_import_bench"


def timed_allot(env: dict[str, str], *args: str) -> tuple[float, float, str]:
    """Seconds, the command's own peak resident MiB (wait4's rusage of that child), output."""
    with tempfile.TemporaryFile("w+") as out:
        started = time.perf_counter()
        child = subprocess.Popen([ALLOT, *args], env=env, stdout=out, stderr=subprocess.DEVNULL)
        _, status, usage = os.wait4(child.pid, 0)
        seconds = time.perf_counter() - started
        child.returncode = os.waitstatus_to_exitcode(status)
        assert child.returncode == 0, f"allot {' '.join(args)} exited {child.returncode}"
        out.seek(0)
        return round(seconds, 1), round(usage.ru_maxrss / 1024, 1), out.read()


def run(args: argparse.Namespace) -> dict[str, Any]:
    source = create_database("postgresql", SOURCE)
    work = Path(tempfile.mkdtemp(prefix="allot-import-bench-"))
    try:
        with_standard_traits(source, work)
        # In a process of its own: a child's peak memory (ru_maxrss) starts from its parent's
        # size at fork, so this process stays small for the measurement to be the importer's.
        started = time.perf_counter()
        dsn = f"postgresql://postgres@127.0.0.1:5432/{SOURCE}"
        subprocess.run(
            [sys.executable, "-m", "bench.dataset", "--dsn", dsn, "--providers",
             str(args.providers), "--consumers", str(args.consumers)],
            check=True, capture_output=True, cwd=HERE.parent,
        )  # fmt: skip
        built = {
            "providers": int(psql(SOURCE, "SELECT count(*) FROM resource_providers")),
            "consumers": args.consumers,
            "allocations": int(psql(SOURCE, "SELECT count(*) FROM allocations")),
            "seconds": round(time.perf_counter() - started, 1),
        }
        recreate(TARGET)
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("ALLOT_")},
            "ALLOT_DATABASE_URL": f"postgresql+asyncpg://postgres@127.0.0.1:5432/{TARGET}",
        }
        subprocess.run([ALLOT, "db", "upgrade"], env=env, check=True, capture_output=True)
        source_url = f"postgresql://postgres@127.0.0.1:5432/{SOURCE}"
        imported_s, import_mib, report = timed_allot(env, "db", "import-placement", source_url)
        verified_s, verify_mib, verdict = timed_allot(env, "db", "verify-import", source_url)
        return {
            "dataset": built,
            "import_s": imported_s,
            "import_peak_mib": import_mib,
            "verify_s": verified_s,
            "verify_peak_mib": verify_mib,
            "verdict": verdict.strip(),
            "report": report.strip().splitlines(),
        }
    finally:
        drop_database("postgresql", SOURCE)
        psql("postgres", f'DROP DATABASE IF EXISTS "{TARGET}" WITH (FORCE)')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--providers", type=int, default=10_000)
    parser.add_argument("--consumers", type=int, default=300_000)
    args = parser.parse_args()
    results = {
        "recorded": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "commit": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        ).stdout.strip(),
        **run(args),
    }
    out = HERE / "results" / "import.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
