"""Real `allot serve` processes and PostgreSQL databases of their own, for concurrency tests."""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from app.engines import make_engine
from app.migrations_runner import upgrade
from tests.conftest import PG_URL, TEST_SECRET, test_settings

ALLOT = str(Path(sys.executable).with_name("allot"))


@contextlib.asynccontextmanager
async def own_postgres(suffix: str) -> AsyncIterator[str]:
    """A PostgreSQL database of the test's own (`<test database>_<suffix>`), migrated,
    dropped afterwards: `allot serve` processes share it with the test."""
    if not PG_URL:
        pytest.skip("needs ALLOT_TEST_DATABASE_URL (CI always sets it)")
    url = make_url(PG_URL)
    name = f"{url.database}_{suffix}"
    admin = create_async_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await conn.execute(text(f'CREATE DATABASE "{name}"'))
    database_url = url.set(database=name).render_as_string(hide_password=False)
    engine = make_engine(database_url, test_settings(database_url))
    await upgrade(engine)
    await engine.dispose()
    try:
        yield database_url
    finally:
        async with admin.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()


def free_port(ports: range) -> int:
    for port in random.sample(ports, len(ports)):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {ports.start}-{ports.stop - 1}")


@contextlib.contextmanager
def allot_serve(
    database_url: str,
    *,
    workers: int,
    log: Path,
    ports: range,
    pool_size: int = 8,
    settings: dict[str, str] | None = None,
) -> Iterator[str]:
    """`allot serve` as its own process group, on a free port of `ports`; stopped afterwards."""
    port = free_port(ports)
    env = {
        **os.environ,
        "ALLOT_DATABASE_URL": database_url,
        "ALLOT_AUTH_JWT_SECRET": TEST_SECRET,
        "ALLOT_RATE_LIMIT": "off",
        "ALLOT_RATE_LIMIT_ANON": "off",
        "ALLOT_LOG_LEVEL": "WARNING",
        "ALLOT_DATABASE_POOL_SIZE": str(pool_size),
        "ALLOT_DATABASE_MAX_OVERFLOW": "4",
        **(settings or {}),
    }
    with log.open("wb") as out:
        process = subprocess.Popen(
            [ALLOT, "serve", "--workers", str(workers), "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, f"allot serve exited:\n{log.read_text()[-3000:]}"
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            assert time.monotonic() < deadline, "allot serve did not come up"
            time.sleep(0.2)
        yield base
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@contextlib.contextmanager
def pgbouncer(database_url: str, *, workdir: Path, ports: range) -> Iterator[str]:
    """Debian's PgBouncer in transaction pooling mode in front of `database_url`'s server
    (as the `postgres` user: it refuses to run as root); yields the URL through it."""
    binary = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
    if not Path(binary).exists():
        raise RuntimeError("pgbouncer is not installed (Debian package pgbouncer)")
    url = make_url(database_url)
    port = free_port(ports)
    ini = workdir / "pgbouncer.ini"
    ini.write_text(
        "[databases]\n"
        # auth_type=any takes every client as the one user the pool connects as.
        f"* = host={url.host or '127.0.0.1'} port={url.port or 5432} user={url.username}\n"
        "[pgbouncer]\n"
        f"listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
        "auth_type = any\npool_mode = transaction\n"
        "max_client_conn = 200\ndefault_pool_size = 6\n"
        # Fewer server connections than clients: each serves several clients in turn.
        "ignore_startup_parameters = extra_float_digits\n"
        f"logfile = {workdir / 'pgbouncer.log'}\npidfile = {workdir / 'pgbouncer.pid'}\n"
    )
    command = [binary, str(ini)]
    if os.geteuid() == 0:
        shutil.chown(workdir, "postgres")
        command = ["runuser", "-u", "postgres", "--", *command]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            assert process.poll() is None, (workdir / "pgbouncer.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "pgbouncer did not come up"
            time.sleep(0.1)
        yield url.set(host="127.0.0.1", port=port).render_as_string(hide_password=False)
    finally:
        process.terminate()
        process.wait(timeout=10)
