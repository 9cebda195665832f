"""A wrong or missing setting stops `allot serve` with one line naming it, never a traceback.

What an operator sees when a deployment is misconfigured: exit status 2 and a single line
`allot: configuration error: ALLOT_...` on stderr that names the setting and never its value.
The service never starts with a weaker default instead.
"""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import pytest

from tests.conftest import PG_URL
from tests.deployment.topology import ALLOT, free_port, own_database

pytestmark = pytest.mark.slow

SECRET = "a-signing-secret-that-must-never-be-printed-0123456789"
PASSWORD = "a-database-password-never-printed"


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port  # nothing listens there once the socket is closed


def _serve(tmp_path: Path, **settings: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALLOT_")}
    env.update(settings)
    return subprocess.run(
        [ALLOT, "serve", "--port", str(free_port())],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )


def _assert_refused(result: subprocess.CompletedProcess[str], setting: str) -> None:
    assert result.returncode == 2, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines == [lines[0]], "one line"
    assert lines[0].startswith(f"allot: configuration error: {setting}")
    output = result.stdout + result.stderr
    assert "Traceback" not in output
    assert SECRET not in output and PASSWORD not in output


@pytest.mark.parametrize(
    ("setting", "settings"),
    [
        ("ALLOT_DATABASE_URL", {"ALLOT_DATABASE_URL": "mysql://somewhere/allot"}),
        ("ALLOT_ENV=production", {"ALLOT_ENV": "production", "ALLOT_AUTH_JWT_SECRET": ""}),
        ("ALLOT_POLICY", {"ALLOT_POLICY": "no-such-profile"}),
        ("ALLOT_RATE_LIMIT", {"ALLOT_RATE_LIMIT": "lots"}),
        ("ALLOT_RATE_LIMIT_STORAGE", {"ALLOT_RATE_LIMIT_STORAGE": "carrier-pigeon://x"}),
    ],
    ids=["database-url", "production-without-key", "policy", "rate-limit", "storage-scheme"],
)
def test_a_wrong_setting_is_named_in_one_line(
    tmp_path: Path, setting: str, settings: dict[str, str]
) -> None:
    _assert_refused(_serve(tmp_path, **{"ALLOT_AUTH_JWT_SECRET": SECRET, **settings}), setting)


def test_an_unreachable_redis_stops_the_start(tmp_path: Path) -> None:
    result = _serve(
        tmp_path,
        ALLOT_AUTH_JWT_SECRET=SECRET,
        ALLOT_RATE_LIMIT_STORAGE=f"redis://:{PASSWORD}@127.0.0.1:{_closed_port()}/0",
    )
    _assert_refused(result, "ALLOT_RATE_LIMIT_STORAGE")


def test_an_unreachable_database_stops_the_start(tmp_path: Path) -> None:
    url = f"postgresql+asyncpg://allot:{PASSWORD}@127.0.0.1:{_closed_port()}/allot"
    result = _serve(
        tmp_path, ALLOT_ENV="production", ALLOT_AUTH_JWT_SECRET=SECRET, ALLOT_DATABASE_URL=url
    )
    _assert_refused(result, "ALLOT_DATABASE_URL")
    assert "cannot be reached" in result.stderr


@pytest.mark.skipif(not PG_URL, reason="needs PostgreSQL: set ALLOT_TEST_DATABASE_URL")
def test_an_unmigrated_database_stops_the_start_and_says_what_to_run(tmp_path: Path) -> None:
    assert PG_URL
    with own_database(PG_URL, "unmigrated") as url:
        result = _serve(
            tmp_path, ALLOT_ENV="production", ALLOT_AUTH_JWT_SECRET=SECRET, ALLOT_DATABASE_URL=url
        )
    _assert_refused(result, "ALLOT_DATABASE_URL")
    assert "allot db upgrade" in result.stderr


def _blocked(tmp_path: Path) -> Path:
    """A path that cannot become a directory (a file stands where its parent would be): what a
    read-only root gives allot, seen from a process that may write everywhere else."""
    (tmp_path / "blocked").write_text("a file, not a directory")
    return tmp_path / "blocked"


def test_workers_without_a_writable_metrics_directory_stop_the_start(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALLOT_")}
    env |= {
        "ALLOT_AUTH_JWT_SECRET": SECRET,
        "ALLOT_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'allot.db'}",
        "PROMETHEUS_MULTIPROC_DIR": str(_blocked(tmp_path) / "metrics"),
    }
    result = subprocess.run(
        [ALLOT, "serve", "--workers", "2", "--port", str(free_port())],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    _assert_refused(result, "PROMETHEUS_MULTIPROC_DIR")
    assert "emptyDir or tmpfs" in result.stderr


def test_an_embedded_database_that_cannot_be_written_stops_the_start(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{_blocked(tmp_path) / 'allot.db'}"
    result = _serve(tmp_path, ALLOT_AUTH_JWT_SECRET=SECRET, ALLOT_DATABASE_URL=url)
    _assert_refused(result, "ALLOT_DATABASE_URL")


def test_no_key_and_no_writable_place_for_a_local_one_stops_the_start(tmp_path: Path) -> None:
    (tmp_path / "var").write_text("the local key's directory cannot be made")
    url = f"sqlite+aiosqlite:///{tmp_path / 'db' / 'allot.db'}"
    _assert_refused(_serve(tmp_path, ALLOT_DATABASE_URL=url), "ALLOT_AUTH_JWT_SECRET")
