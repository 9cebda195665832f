"""Database engines, sessions, and the write-transaction runner.

Correctness across processes comes from the database alone: generations checked
in the statements that bump them, constraints, and transactions. A write that
loses a race is rolled back and run again from the start, a bounded number of
times, before the client is told 409.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import bindparam, event, make_url, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, DisconnectionError, OperationalError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from app.errors import CONCURRENT_UPDATE, ApiError
from app.observability import GENERATION_RETRIES, POOL_CHECKED_OUT
from app.settings import Settings

log = logging.getLogger("allot.db")

T = TypeVar("T")

# SQLSTATEs that mean "another transaction won; try again".
_RETRYABLE_SQLSTATES = {"40001", "40P01"}


class GenerationConflict(Exception):
    """A generation seen earlier in this transaction has changed: the unit must be retried."""


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # pysqlite's implicit transactions break SAVEPOINT and locking; we issue BEGIN ourselves.
    dbapi_conn.isolation_level = None
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _sqlite_begin(conn: Any) -> None:
    # Writers take the write lock at BEGIN, so two writers never deadlock upgrading a read lock.
    if conn.get_execution_options().get("sqlite_readonly"):
        conn.exec_driver_sql("BEGIN")
    else:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def _ensure_sqlite_directory(url: str) -> None:
    # The embedded database lives in ./var/, which a fresh clone does not have yet.
    database = make_url(url).database
    if database and database != ":memory:" and not database.startswith("file:"):
        Path(database).parent.mkdir(parents=True, exist_ok=True)


def _count_pool_use(engine: AsyncEngine) -> AsyncEngine:
    # /metrics: connections in use right now (a gauge summed over live processes).
    pool = engine.sync_engine.pool
    event.listen(pool, "checkout", lambda *_: POOL_CHECKED_OUT.inc())
    event.listen(pool, "checkin", lambda *_: POOL_CHECKED_OUT.dec())
    return engine


# A pooled connection idle longer than this is pinged before it is handed out.
IDLE_PING_AFTER_S = 10.0


def _hand_out_live_connections(engine: AsyncEngine) -> AsyncEngine:
    """Hand out only live connections, without a round trip per checkout.

    `pool_pre_ping` pings on every checkout, which asyncpg spends three round trips on
    (BEGIN, ping, ROLLBACK): a fifth of a claim's. Instead: a connection the server closed
    (a restart, `pg_terminate_backend`, a proxy cut) is known closed to the driver already,
    at no cost; one idle longer than IDLE_PING_AFTER_S may have been dropped silently on the
    way (a firewall, a NAT), so it is pinged. A busy connection that died anyway fails its
    statement, and SQLAlchemy then renews the whole pool.
    """
    pool = engine.sync_engine.pool
    dialect = engine.sync_engine.dialect

    def checkin(_dbapi_conn: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    def checkout(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        idle_since = record.info.pop("idle_since", None)
        if idle_since is None:
            return  # just connected
        is_closed = getattr(dbapi_conn.driver_connection, "is_closed", None)
        if is_closed is not None and is_closed():
            raise DisconnectionError("the server closed this connection")
        if time.monotonic() - idle_since < IDLE_PING_AFTER_S:
            return  # in steady use
        try:
            alive = dialect.do_ping(dbapi_conn)
        except Exception as exc:
            raise DisconnectionError(f"idle connection failed its ping: {exc}") from exc
        if not alive:
            raise DisconnectionError("idle connection failed its ping")

    event.listen(pool, "checkin", checkin)
    event.listen(pool, "checkout", checkout)
    return engine


def make_engine(url: str, settings: Settings) -> AsyncEngine:
    if url.startswith("sqlite"):
        _ensure_sqlite_directory(url)
        engine = create_async_engine(url, connect_args={"timeout": 30})
        sync_engine: Engine = engine.sync_engine
        event.listen(sync_engine, "connect", _sqlite_pragmas)
        event.listen(sync_engine, "begin", _sqlite_begin)
        return _count_pool_use(engine)
    engine = create_async_engine(
        url,
        pool_size=settings.database_pool_size,
        max_overflow=settings.database_max_overflow,
        pool_timeout=settings.database_pool_timeout,
    )
    return _count_pool_use(_hand_out_live_connections(engine))


def is_retryable(exc: BaseException) -> bool:
    if isinstance(exc, GenerationConflict):
        return True
    if isinstance(exc, DBAPIError):
        orig = exc.orig
        sqlstate = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
        if sqlstate in _RETRYABLE_SQLSTATES:
            return True
        if isinstance(exc, OperationalError) and "database is locked" in str(orig):
            return True
    return False


class Database:
    """Engines and session factories for one process."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.engine = make_engine(settings.database_url, settings)
        self.read_engine = (
            make_engine(settings.database_read_url, settings)
            if settings.database_read_url
            else self.engine
        )
        self._writer = async_sessionmaker(self.engine, expire_on_commit=False, autoflush=False)
        read_bind = self.read_engine
        if read_bind.dialect.name == "sqlite":
            read_bind = read_bind.execution_options(sqlite_readonly=True)
        self._reader = async_sessionmaker(read_bind, expire_on_commit=False, autoflush=False)
        # Writers wait here for one of the pool's connections, first come, first served. The
        # pool's own queue lets a newcomer take a connection just handed to a waiter, which
        # then goes to the back of the line: under load that was a claim's p99 at 4x its p50.
        self._write_slots = asyncio.Semaphore(
            settings.database_pool_size + settings.database_max_overflow
        )

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    async def dispose(self) -> None:
        await self.engine.dispose()
        if self.read_engine is not self.engine:
            await self.read_engine.dispose()

    async def reader(self) -> AsyncIterator[AsyncSession]:
        """A read-only session for one request; rolled back at the end."""
        async with self._reader() as session:
            yield session

    @contextlib.asynccontextmanager
    async def _write_slot(self) -> AsyncIterator[None]:
        # As long as the pool would wait for a connection; then 503, as the pool would.
        async with asyncio.timeout(self.settings.database_pool_timeout):
            await self._write_slots.acquire()
        try:
            yield
        finally:
            self._write_slots.release()

    async def write(
        self,
        work: Callable[[AsyncSession], Awaitable[T]],
        *,
        retries: int | None = None,
    ) -> T:
        """Run `work` in one transaction and commit it; retry the whole unit on a lost race."""
        attempts = (self.settings.write_retries if retries is None else retries) + 1
        for attempt in range(attempts):
            try:
                async with self._write_slot(), self._writer() as session, session.begin():
                    return await work(session)
            except Exception as exc:
                if not is_retryable(exc):
                    raise
                log.info(
                    "write lost a race; retrying",
                    extra={"attempt": attempt + 1, "reason": type(exc).__name__},
                )
                GENERATION_RETRIES.inc()
                if attempt + 1 < attempts:
                    # Jittered exponential backoff, capped, so writers desynchronise.
                    await asyncio.sleep(random.uniform(0, min(0.2, 0.005 * 2**attempt)))
        raise ApiError(409, CONCURRENT_UPDATE, log_detail=f"gave up after {attempts} attempts")


async def execute_core(session: AsyncSession, statement: Any, params: Any = None) -> Any:
    """Run a statement that names columns, not entities, on the session's connection: the
    same transaction, without the ORM's per-statement handling (a tenth of a claim's CPU)."""
    connection = await session.connection()
    return await connection.execute(statement, params)


@functools.cache
def _bump_statement(model: Any, columns: tuple[str, ...]) -> Any:
    # Built once per shape, with bound parameters: every write runs one or more of these.
    return (
        update(model)
        .where(model.id == bindparam("row_id"), model.generation == bindparam("seen"))
        .values(generation=bindparam("next"), **{c: bindparam(f"new_{c}") for c in columns})
        .execution_options(synchronize_session=False)
    )


async def bump_generation(
    session: AsyncSession,
    model: Any,
    row_id: int,
    seen: int,
    *,
    from_client: bool = False,
    values: dict[str, Any] | None = None,
) -> int:
    """Bump a row's generation if it is still `seen`, in the statement that bumps it
    (which also writes `values`, when given).

    A generation the server read itself (`from_client=False`) that moved means another
    writer won: GenerationConflict, and the whole unit is retried. A generation the
    client sent that does not match is the client's stale view: 409 at once.
    """
    values = values or {}
    result = await session.execute(
        _bump_statement(model, tuple(sorted(values))),
        {"row_id": row_id, "seen": seen, "next": seen + 1}
        | {f"new_{column}": value for column, value in values.items()},
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        if from_client:
            raise ApiError(
                409,
                CONCURRENT_UPDATE,
                log_detail=f"stale generation {seen} for row {row_id}",
            )
        raise GenerationConflict(f"generation of row {row_id} is no longer {seen}")
    return seen + 1


async def insert_ignoring_duplicates(
    session: AsyncSession, model: Any, rows: list[dict[str, Any]]
) -> None:
    """INSERT rows, skipping any that collide with a unique key (safe under concurrency)."""
    if not rows:
        return
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    await session.execute(insert(model).values(rows).on_conflict_do_nothing())
