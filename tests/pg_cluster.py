"""A PostgreSQL primary and a streaming hot standby of the test's own: two servers in a
temporary directory, on ports of their own, run as the `postgres` user (PostgreSQL refuses
root), from the machine's PostgreSQL binaries. The machine's own server is not touched.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg


def _bindir() -> Path:
    found = shutil.which("pg_config")
    if found:
        result = subprocess.run([found, "--bindir"], capture_output=True, text=True, check=True)
        return Path(result.stdout.strip())
    return sorted(Path("/usr/lib/postgresql").glob("*/bin"))[-1]


def _as_postgres(*command: str) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else list(command)


@dataclass
class Server:
    name: str
    data: Path
    port: int

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def pg_ctl(self, *args: str) -> None:
        log = self.data.parent / f"{self.name}.log"
        subprocess.run(
            _as_postgres(str(_bindir() / "pg_ctl"), "-D", str(self.data), "-l", str(log), *args),
            check=True,
            capture_output=True,
            timeout=60,
        )

    def start(self) -> None:
        self.pg_ctl("-w", "-o", f"-p {self.port} -k {self.data.parent}", "start")

    def stop(self, mode: str = "fast") -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self.pg_ctl("-w", "-m", mode, "stop")


async def execute(server: Server, sql: str) -> object:
    connection = await asyncpg.connect(server.dsn)
    try:
        return await connection.fetchval(sql)
    finally:
        await connection.close()


@contextlib.contextmanager
def primary_and_standby(ports: tuple[int, int]) -> Iterator[tuple[Server, Server]]:
    """A primary (trust auth, replication allowed on loopback) and a hot standby streaming
    from it (pg_basebackup -R); both stopped and removed afterwards."""
    # A directory of its own under /tmp, which the postgres user can reach.
    workdir = Path(tempfile.mkdtemp(prefix="allot-pg-"))
    if os.geteuid() == 0:
        shutil.chown(workdir, "postgres")
    primary = Server("primary", workdir / "primary", ports[0])
    standby = Server("standby", workdir / "standby", ports[1])
    subprocess.run(
        _as_postgres(
            str(_bindir() / "initdb"),
            "-D",
            str(primary.data),
            "-U",
            "postgres",
            "--auth=trust",
            "--no-sync",
        ),
        check=True,
        capture_output=True,
        timeout=120,
    )
    with (primary.data / "postgresql.conf").open("a") as conf:
        conf.write(
            "listen_addresses = '127.0.0.1'\nwal_level = replica\nmax_wal_senders = 4\n"
            "hot_standby = on\nfsync = off\nmax_connections = 100\n"
        )
    with (primary.data / "pg_hba.conf").open("a") as hba:
        hba.write("host replication all 127.0.0.1/32 trust\n")
    try:
        primary.start()
        subprocess.run(
            _as_postgres(
                str(_bindir() / "pg_basebackup"),
                "-h",
                "127.0.0.1",
                "-p",
                str(primary.port),
                "-U",
                "postgres",
                "-D",
                str(standby.data),
                "-R",
                "-X",
                "stream",
            ),
            check=True,
            capture_output=True,
            timeout=120,
        )
        standby.start()
        yield primary, standby
    finally:
        standby.stop("immediate")
        primary.stop("immediate")
        shutil.rmtree(workdir, ignore_errors=True)
