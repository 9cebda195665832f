"""Sessions and the write-transaction runner (engines: app.engines; statements: app.statements).

Correctness across processes comes from the database alone: generations checked
in the statements that bump them, constraints, and transactions. A write that
loses a race is rolled back and run again from the start, a bounded number of
times, before the client is told 409.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import asyncpg
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session
from sqlalchemy.pool import PoolProxiedConnection

from app.engines import make_engine
from app.errors import CONCURRENT_UPDATE, ApiError, is_database_unavailable
from app.observability import GENERATION_RETRIES, REPLICA_READS
from app.replicas import ReplicaMonitor
from app.settings import Settings
from app.statements import DRIVER, GenerationConflict

log = logging.getLogger("allot.db")

T = TypeVar("T")

# SQLSTATEs that mean "another transaction won; try again".
_RETRYABLE_SQLSTATES = {"40001", "40P01"}


def is_retryable(exc: BaseException) -> bool:
    if isinstance(exc, GenerationConflict):
        return True
    if isinstance(exc, asyncpg.PostgresError):  # raised by the driver itself (COMMIT)
        return exc.sqlstate in _RETRYABLE_SQLSTATES
    if isinstance(exc, DBAPIError):
        orig = exc.orig
        sqlstate = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
        if sqlstate in _RETRYABLE_SQLSTATES:
            return True
        if isinstance(exc, OperationalError) and "database is locked" in str(orig):
            return True
    return False


# session.info key of a PostgreSQL write in progress: the pooled connection it holds (_Held);
# its driver connection is under app.statements.DRIVER.
_HELD = "allot.held"


class _Held:
    """A PostgreSQL write's pooled connection, wrapped as a SQLAlchemy Connection only when
    the write's session first needs one."""

    def __init__(self, engine: Engine, pooled: PoolProxiedConnection) -> None:
        self.engine = engine
        self.pooled = pooled
        self.wrapped: Connection | None = None

    def connection(self) -> Connection:
        if self.wrapped is None:
            self.wrapped = Connection(self.engine, connection=self.pooled)
        return self.wrapped

    def release(self) -> None:
        """Back to the pool (the wrapper, when there is one, owns the connection)."""
        if self.wrapped is not None:
            self.wrapped.close()
        else:
            self.pooled.close()


class _WriteSession(Session):
    """The session of a PostgreSQL write: every statement runs on the connection it holds."""

    def get_bind(self, *args: Any, **kwargs: Any) -> Any:
        held: _Held | None = self.info.get(_HELD)
        return held.connection() if held is not None else super().get_bind(*args, **kwargs)


class Database:
    """Engines and session factories for one process."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.engine = make_engine(settings.database_url, settings)
        self.dialect: str = self.engine.dialect.name  # "postgresql" or "sqlite"
        self.read_engine = (
            make_engine(settings.database_read_url, settings)
            if settings.database_read_url
            else self.engine
        )
        self._write_bind = self.engine
        write_session: type[Session] = Session
        if self.dialect == "postgresql":
            # A write's transaction is the driver's own (see `_transaction`): SQLAlchemy sends
            # no BEGIN or COMMIT of its own on these connections.
            self._write_bind = self.engine.execution_options(isolation_level="AUTOCOMMIT")
            write_session = _WriteSession
        self._writer = async_sessionmaker(
            self._write_bind,
            expire_on_commit=False,
            autoflush=False,
            sync_session_class=write_session,
        )
        self._reader = self._read_sessions(self.engine)
        self.replica: ReplicaMonitor | None = None
        if self.read_engine is not self.engine:
            self._replica_reader = self._read_sessions(self.read_engine)
            self.replica = ReplicaMonitor(
                self.engine, self.read_engine, settings.database_read_max_lag_ms
            )
        # Writers wait here for one of the pool's connections, first come, first served. The
        # pool's own queue lets a newcomer take a connection just handed to a waiter, which
        # then goes to the back of the line: under load that was a claim's p99 at 4x its p50.
        self._write_slots = asyncio.Semaphore(
            settings.database_pool_size + settings.database_max_overflow
        )

    @staticmethod
    def _read_sessions(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
        bind = engine
        if engine.dialect.name == "sqlite":
            bind = engine.execution_options(sqlite_readonly=True)
        return async_sessionmaker(bind, expire_on_commit=False, autoflush=False)

    async def start(self) -> None:
        if self.replica is not None:
            await self.replica.check()  # known before the first request
            self.replica.start()

    async def dispose(self) -> None:
        if self.replica is not None:
            await self.replica.stop()
        await self.engine.dispose()
        if self.read_engine is not self.engine:
            await self.read_engine.dispose()

    async def reader(self) -> AsyncIterator[AsyncSession]:
        """A read-only session on the primary for one request; rolled back at the end."""
        async with self._reader() as session:
            yield session

    async def stale_reader(
        self, *, primary: bool = False, on_replica: Callable[[], None] = lambda: None
    ) -> AsyncIterator[AsyncSession]:
        """For reads that may be stale by up to ALLOT_DATABASE_READ_MAX_LAG_MS: a session on
        the read replica while it is that fresh, else (or with `primary`) on the primary.

        Its connection is taken at once, so a replica gone since the last check costs a
        fallback, not an error; `on_replica` is told when the replica serves, so that a read
        it fails in the middle can be run again on the primary (app.middleware does).
        """
        if self.replica is not None and primary:
            self.replica.unreachable()  # it failed this very request: wait for a check
        elif self.replica is not None and self.replica.fresh:
            session = self._replica_reader()
            try:
                await session.connection()
            except Exception as exc:
                await session.close()
                if not is_database_unavailable(exc):
                    raise
                self.replica.unreachable()
            else:
                REPLICA_READS.labels("replica").inc()
                on_replica()
                async with session:
                    yield session
                return
        if self.replica is not None:
            REPLICA_READS.labels("primary").inc()
        async with self._reader() as session:
            yield session

    @contextlib.asynccontextmanager
    async def _write_slot(self) -> AsyncIterator[None]:
        if self._write_slots.locked():
            # Wait as long as the pool would wait for a connection; then 503, as it would.
            async with asyncio.timeout(self.settings.database_pool_timeout):
                await self._write_slots.acquire()
        else:
            await self._write_slots.acquire()  # a free slot and nobody waiting: no timer
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
                async with self._write_slot():
                    return await self._transaction(work)
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

    async def _transaction(self, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
        if self.dialect != "postgresql":
            async with self._writer() as session, session.begin():
                return await work(session)
        # On PostgreSQL the driver holds the transaction, so that `execute_core` can run
        # statements on the driver itself and they still commit or roll back with the rest.
        # The pooled connection is taken bare: SQLAlchemy wraps it for the session only if the
        # write runs a statement through the session (a claim never does: the wrapping cost it
        # about as much CPU as two of its four round trips).
        held = _Held(self._write_bind.sync_engine, await self._write_bind.raw_connection())
        driver: Any = held.pooled.driver_connection
        session = self._writer(info={_HELD: held, DRIVER: driver})
        try:
            transaction = driver.transaction()
            await transaction.start()
            try:
                result = await work(session)
                if session.new or session.dirty or session.deleted:
                    await session.flush()  # what the ORM still holds, in this transaction
            except BaseException:
                # On a connection lost midway the rollback fails too ("another operation is
                # in progress"), and the server has rolled back already: the first error is
                # the one to answer (503 for an outage), not the rollback's.
                with contextlib.suppress(Exception):
                    await transaction.rollback()
                raise
            await transaction.commit()
            return result
        finally:
            try:
                if held.wrapped is not None:  # a session that never took it holds nothing
                    await session.close()
            finally:
                held.release()
