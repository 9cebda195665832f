"""The production topology, natively: PostgreSQL, Redis, `allot db upgrade`, N `allot serve`.

The pieces the multi-process tests use: real `allot` processes (the console script of this
environment), a private Redis, a database of their own, and a TCP proxy in front of PostgreSQL
that a test can cut and restore to play a database outage without touching the machine's server.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from sqlalchemy.engine import URL, make_url

ALLOT = str(Path(sys.executable).with_name("allot"))
# Ports for the processes these tests start: this range first, then any free one.
PORT_RANGE = range(8600, 8700)


def free_port() -> int:
    for port in [*PORT_RANGE, 0]:
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            chosen: int = sock.getsockname()[1]
            if chosen not in _taken:
                _taken.add(chosen)
                return chosen
    raise RuntimeError("no free port")


_taken: set[int] = set()


def wait_for(predicate: object, what: str, timeout: float = 60.0) -> None:
    """Poll a callable until it returns truthy: a bound on waiting, not a timing assertion."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if predicate():  # type: ignore[operator]
                return
        time.sleep(0.1)
    raise AssertionError(f"gave up waiting for {what}")


def _log_tail(path: Path, lines: int = 40) -> str:
    if not path.exists():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


@dataclass
class Process:
    """One `allot serve` (its own process group: the uvicorn supervisor and its workers)."""

    name: str
    port: int
    env: dict[str, str]
    log: Path
    workers: int = 2
    # The command before `--host`: the console script, or an interpreter running the CLI.
    command: list[str] = field(default_factory=lambda: [ALLOT, "serve"])
    cwd: Path | None = None
    popen: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.launch()
        self.wait_ready()

    def launch(self) -> None:
        """Start the process without waiting (several can boot at once)."""
        with self.log.open("ab") as out:
            self.popen = subprocess.Popen(
                [
                    *self.command,
                    *("--host", "127.0.0.1", "--port", str(self.port)),
                    *("--workers", str(self.workers), "--graceful-timeout", "20"),
                ],
                env=self.env,
                cwd=self.cwd or self.log.parent,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait_ready(self) -> None:
        wait_for(self._healthy, f"{self.name} to serve", timeout=120)

    def _healthy(self) -> bool:
        assert self.popen is not None
        if self.popen.poll() is not None:
            raise AssertionError(f"{self.name} exited:\n{_log_tail(self.log)}")
        return httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200

    def terminate(self, timeout: float = 60) -> int:
        """SIGTERM to the supervisor (as a container runtime does); its exit code."""
        assert self.popen is not None
        self.popen.send_signal(signal.SIGTERM)
        return self.popen.wait(timeout=timeout)

    def stop(self) -> None:
        if self.popen is None or self.popen.poll() is not None:
            return
        try:
            self.terminate(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait()

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


class Redis:
    """A private redis-server: counters of these tests only, gone with them."""

    def __init__(self, workdir: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (Debian package redis-server)")
        self.port = free_port()
        self.popen = subprocess.Popen(
            [
                *(binary, "--port", str(self.port), "--bind", "127.0.0.1"),
                *("--save", "", "--appendonly", "no", "--dir", str(workdir)),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(self._up, "redis-server", timeout=20)

    def _up(self) -> bool:
        with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        self.popen.terminate()
        self.popen.wait(timeout=10)


@dataclass
class TcpProxy:
    """Forwards a local port to PostgreSQL; `cut()` drops every connection and refuses new ones.

    Runs its own event loop in a thread so it keeps forwarding whatever the test's loop does.
    """

    target_host: str
    target_port: int
    port: int = field(default_factory=free_port)
    _open: bool = True
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)

    def __post_init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        started = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(started,), daemon=True)
        self._thread.start()
        started.wait(10)

    def _run(self, started: threading.Event) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(
            asyncio.start_server(self._handle, "127.0.0.1", self.port)
        )
        started.set()
        self._loop.run_forever()
        server.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self._open:
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(self.target_host, self.target_port)
        except OSError:
            writer.close()
            return
        self._writers.update((writer, up_writer))
        await asyncio.gather(
            self._pipe(reader, up_writer), self._pipe(up_reader, writer), return_exceptions=True
        )

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        finally:
            writer.close()
            self._writers.discard(writer)

    def _set(self, is_open: bool) -> None:
        def apply() -> None:
            self._open = is_open
            if not is_open:
                for writer in list(self._writers):
                    writer.transport.abort()
                self._writers.clear()

        done = threading.Event()
        self._loop.call_soon_threadsafe(lambda: (apply(), done.set()))
        done.wait(10)

    def cut(self) -> None:
        self._set(False)

    def restore(self) -> None:
        self._set(True)

    def close(self) -> None:
        self.cut()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


def asyncpg_dsn(url: URL) -> str:
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


def with_host_port(url: str, host: str, port: int) -> str:
    return make_url(url).set(host=host, port=port).render_as_string(hide_password=False)


@contextlib.contextmanager
def own_database(base_url: str, suffix: str) -> Iterator[str]:
    """A fresh PostgreSQL database next to `base_url`'s (same server, `<name>_<suffix>`)."""
    import asyncpg

    url = make_url(base_url)
    name = f"{url.database}_{suffix}"

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(asyncpg_dsn(url.set(database="postgres")))
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    def run(sql: str) -> None:
        # Outside any running loop of the test session: a thread with its own.
        error: list[BaseException] = []

        def target() -> None:
            try:
                asyncio.run(admin(sql))
            except BaseException as exc:
                error.append(exc)

        thread = threading.Thread(target=target)
        thread.start()
        thread.join()
        if error:
            raise error[0]

    run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    run(f'CREATE DATABASE "{name}"')
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def migrate(env: dict[str, str]) -> None:
    """The one-shot migration job of the deployment."""
    result = subprocess.run(
        [ALLOT, "db", "upgrade"], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "database at head" in result.stdout
