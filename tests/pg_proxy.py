"""A TCP proxy in front of PostgreSQL that cuts connections the way a network failure or a
server crash would: all at once, or one connection at a chosen point of a transaction.

It reads the frontend protocol (what the client sends) just enough to know where a
connection is: each message is a type byte and a length, after the startup exchange.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from dataclasses import dataclass, field

_SSL_REQUEST = 80877103
_GSS_REQUEST = 80877104


def _sql_of(kind: bytes, payload: bytes) -> str | None:
    """The SQL text of a simple query ('Q') or a statement being prepared ('P')."""
    if kind == b"Q":
        return payload.split(b"\0", 1)[0].decode(errors="replace")
    if kind == b"P":
        return payload.split(b"\0", 2)[1].decode(errors="replace")
    return None


def _word(sql: str) -> str:
    words = sql.split()
    return words[0].rstrip(";").upper() if words else ""


@dataclass
class Cut:
    """Where to cut the next write transaction that reaches it, and what it left.

    `at`: "begin" (the BEGIN never arrives), "statement" (the first statement inside the
    transaction arrives; its answer never comes back), "commit" (the COMMIT never arrives),
    "after_commit" (the COMMIT arrives; its answer never comes back: the client cannot
    know whether it committed).
    """

    at: str
    done: asyncio.Event = field(default_factory=asyncio.Event)


class _Connection:
    def __init__(self, proxy: PgProxy) -> None:
        self.proxy = proxy
        self.buffer = b""
        self.started = False  # past the startup message
        self.in_write = False  # inside a transaction opened by a bare BEGIN
        self.muted = False  # the server's answers no longer reach the client
        self.closers: list[asyncio.StreamWriter] = []

    def frames(self, data: bytes) -> tuple[bytes, bool]:
        """What to forward of `data`, and whether to cut the connection after it."""
        self.buffer += data
        forward = b""
        while True:
            if not self.started:
                if len(self.buffer) < 8:
                    break
                (length,) = struct.unpack("!I", self.buffer[:4])
                if len(self.buffer) < length:
                    break
                code = struct.unpack("!I", self.buffer[4:8])[0]
                if code not in (_SSL_REQUEST, _GSS_REQUEST):
                    self.started = True
                forward, self.buffer = forward + self.buffer[:length], self.buffer[length:]
                continue
            if len(self.buffer) < 5:
                break
            kind = self.buffer[:1]
            (length,) = struct.unpack("!I", self.buffer[1:5])
            if len(self.buffer) < 1 + length:
                break
            message, self.buffer = self.buffer[: 1 + length], self.buffer[1 + length :]
            verdict = self._verdict(kind, message[5:])
            if verdict == "drop":
                return forward, True
            forward += message
            if verdict == "cut_after":
                self.muted = True
                return forward + self.buffer, True
        return forward, False

    def _verdict(self, kind: bytes, payload: bytes) -> str:
        sql = _sql_of(kind, payload)
        word = _word(sql) if sql is not None else ""
        cut = self.proxy.armed
        # The write path opens its transaction with a bare BEGIN (Database._transaction);
        # reads open theirs with an isolation level.
        opens_write = word == "BEGIN" and sql is not None and sql.strip().rstrip(";") == "BEGIN"
        if cut is not None and opens_write and cut.at == "begin":
            return self._fire(cut, "drop")
        if opens_write:
            self.in_write = True
        elif word in ("COMMIT", "ROLLBACK"):
            was_write, self.in_write = self.in_write, False
            if cut is not None and was_write and word == "COMMIT":
                if cut.at == "commit":
                    return self._fire(cut, "drop")
                if cut.at == "after_commit":
                    return self._fire(cut, "cut_after")
        elif cut is not None and self.in_write and cut.at == "statement" and kind in b"QPB":
            return self._fire(cut, "cut_after")
        return "forward"

    def _fire(self, cut: Cut, verdict: str) -> str:
        self.proxy.armed = None
        cut.done.set()
        return verdict

    def close(self) -> None:
        for writer in self.closers:
            with contextlib.suppress(Exception):
                writer.transport.abort()  # a reset, as a dead host or a crash gives


class PgProxy:
    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.server: asyncio.Server | None = None
        self.connections: list[_Connection] = []
        self.armed: Cut | None = None

    def arm(self, at: str) -> Cut:
        self.armed = Cut(at)
        return self.armed

    async def start(self, port: int) -> None:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", port)

    async def cut_all(self) -> None:
        """Every connection gone and no new one accepted: the database is down."""
        assert self.server is not None
        self.server.close()
        for connection in self.connections:
            connection.close()
        await self.server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        connection = _Connection(self)
        connection.closers = [writer, up_writer]
        self.connections.append(connection)
        await asyncio.gather(
            self._client_to_server(connection, reader, up_writer),
            self._server_to_client(connection, up_reader, writer),
        )

    async def _client_to_server(
        self, connection: _Connection, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        with contextlib.suppress(Exception):
            while data := await reader.read(65536):
                forward, cut = connection.frames(data)
                if forward:
                    writer.write(forward)
                    await writer.drain()
                if cut:
                    if connection.muted:
                        # Let the server act on what was forwarded before the connection goes.
                        await asyncio.sleep(0.2)
                    connection.close()
                    return
        connection.close()

    async def _server_to_client(
        self, connection: _Connection, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        with contextlib.suppress(Exception):
            while data := await reader.read(65536):
                if connection.muted:
                    continue
                writer.write(data)
                await writer.drain()
        with contextlib.suppress(Exception):
            writer.close()
