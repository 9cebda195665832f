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
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
from sqlalchemy import bindparam, event, insert, make_url, update
from sqlalchemy.dialects.postgresql import asyncpg as pg_asyncpg
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, DisconnectionError, IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import Session
from sqlalchemy.pool import PoolProxiedConnection

from app.errors import CONCURRENT_UPDATE, ApiError
from app.observability import GENERATION_RETRIES, POOL_CHECKED_OUT
from app.settings import ConfigurationError, Settings

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
        directory = Path(database).parent
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigurationError(
                f"ALLOT_DATABASE_URL: the SQLite database's directory {directory} cannot be "
                f"created ({exc.strerror or exc}); mount a writable volume there, or use "
                "PostgreSQL"
            ) from None


def _count_pool_use(engine: AsyncEngine) -> AsyncEngine:
    # /metrics: connections in use right now (a gauge summed over live processes).
    pool = engine.sync_engine.pool
    event.listen(pool, "checkout", lambda *_: POOL_CHECKED_OUT.inc())
    event.listen(pool, "checkin", lambda *_: POOL_CHECKED_OUT.dec())
    return engine


# A pooled connection idle longer than this is pinged before it is handed out.
IDLE_PING_AFTER_S = 10.0


def _hand_out_live_connections(engine: AsyncEngine) -> AsyncEngine:
    """Hand out only live, idle connections, without a round trip per checkout.

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
        driver = dbapi_conn.driver_connection
        is_closed = getattr(driver, "is_closed", None)
        if is_closed is not None and is_closed():
            raise DisconnectionError("the server closed this connection")
        # A write's transaction is the driver's own (Database._transaction), out of sight of
        # SQLAlchemy's reset-on-return: one whose rollback was interrupted (a cancelled task)
        # would come back still open. Known to the driver at no cost; replace the connection.
        in_transaction = getattr(driver, "is_in_transaction", None)
        if in_transaction is not None and in_transaction():
            raise DisconnectionError("returned to the pool inside a transaction")
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
        connect_args=_pooler_connect_args() if settings.database_transaction_pooler else {},
    )
    return _count_pool_use(_hand_out_live_connections(engine))


def _pooler_connect_args() -> dict[str, Any]:
    """For a transaction-mode pooler: a server connection serves many clients in turn, so a
    prepared statement must not outlive its transaction nor share a name with another
    client's. asyncpg prepares unnamed statements when it caches none (the hot path's
    `execute_core`); SQLAlchemy's own are named uniquely, and none is cached."""
    return {
        "statement_cache_size": 0,
        "prepared_statement_cache_size": 0,
        "prepared_statement_name_func": lambda: f"__allot_{uuid.uuid4().hex}__",
    }


def dialect_of(session: AsyncSession) -> str:
    """Which database, "postgresql" or "sqlite", without taking a connection (a write's
    session may not have one yet)."""
    assert session.bind is not None
    return session.bind.dialect.name


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


# session.info keys of a PostgreSQL write in progress: its driver connection, and the pooled
# connection it holds (_Held).
_DRIVER = "allot.driver"
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
        session = self._writer(info={_HELD: held, _DRIVER: driver})
        try:
            async with driver.transaction():
                result = await work(session)
                if session.new or session.dirty or session.deleted:
                    await session.flush()  # what the ORM still holds, in this transaction
            return result
        finally:
            try:
                if held.wrapped is not None:  # a session that never took it holds nothing
                    await session.close()
            finally:
                held.release()


# --- the hot path: statements compiled once, run without SQLAlchemy's per-execution work ---

_ASYNCPG = pg_asyncpg.dialect()  # type: ignore[no-untyped-call]


async def _driver(session: AsyncSession) -> Any:
    """The asyncpg connection under the session's (one, for its lifetime) connection."""
    connection = await session.connection()
    driver = (await connection.get_raw_connection()).driver_connection
    assert driver is not None
    return driver


@functools.lru_cache(maxsize=256)  # bounded: a statement built per call would otherwise leak
def _compiled(statement: Any) -> tuple[Any, tuple[str, ...]]:
    """A statement compiled for asyncpg, and the names of its list ("expanding") parameters."""
    compiled = statement.compile(dialect=_ASYNCPG)
    if compiled.insert_prefetch or compiled.update_prefetch:
        # SQLAlchemy would compute these columns' defaults on each execution; the driver
        # will not. Name every such column (`created_at`, `updated_at`) in the statement.
        raise TypeError(f"not runnable as compiled: {compiled.string}")
    lists = tuple(sorted({b.key for b in compiled.binds.values() if b.expanding}))
    return compiled, lists


# One parameter slot of a SQL text: (parameter name, index in its list, or None: the value).
_Slot = tuple[str, int | None]


@functools.lru_cache(maxsize=1024)
def _asyncpg_text(
    statement: Any, lengths: tuple[int, ...]
) -> tuple[str, tuple[_Slot, ...], dict[str, Any]]:
    """The SQL text asyncpg runs for lists of these lengths (one text, and one prepared
    statement with exact plans, per shape), its $n slots, and values the statement fixes
    itself (literals)."""
    compiled, lists = _compiled(statement)
    sample: dict[str, Any] = {b.key: None for b in compiled.binds.values() if b.required}
    sample |= {name: [None] * n for name, n in zip(lists, lengths, strict=True)}
    state = compiled.construct_expanded_state(sample)
    listed = {
        expanded: (name, i)
        for name, names in state.parameter_expansion.items()
        for i, expanded in enumerate(names)
    }
    slots = tuple(listed.get(p, (p, None)) for p in state.positiontup or ())
    fixed = {p: state.parameters[p] for p, i in slots if i is None and p not in sample}
    return state.statement, slots, fixed


def _arguments(slots: tuple[_Slot, ...], values: dict[str, Any]) -> list[Any]:
    return [values[name] if i is None else values[name][i] for name, i in slots]


async def execute_core(session: AsyncSession, statement: Any, params: Any = None) -> Sequence[Any]:
    """Run a prebuilt statement that names columns, not entities, in the session's transaction;
    its rows (read them by position). `params`: a dict, or a list of dicts for many rows.

    On PostgreSQL the driver runs it as compiled once per shape of its lists: SQLAlchemy's
    work per execution (cache key, parameters, result rows) cost twice the driver's.
    """
    driver = session.info.get(_DRIVER)
    if driver is None:
        connection = await session.connection()
        if connection.dialect.name != "postgresql":
            result = await connection.execute(statement, params)
            return result.all() if result.returns_rows else []
        driver = await _driver(session)
    many = params if isinstance(params, list) else [params or {}]
    lists = _compiled(statement)[1]
    if lists and len(many) > 1:
        # Each row's lists could have other lengths, hence another SQL text: not one batch.
        raise TypeError("a batch of rows cannot bind lists; run one statement per row")
    sql, slots, fixed = _asyncpg_text(statement, tuple(len(many[0][n]) for n in lists))
    try:
        if isinstance(params, list):
            await driver.executemany(sql, [_arguments(slots, p | fixed) for p in params])
            return []
        rows: Sequence[Any] = await driver.fetch(sql, *_arguments(slots, many[0] | fixed))
        return rows
    except asyncpg.IntegrityConstraintViolationError as exc:
        raise IntegrityError(sql, params, exc) from exc
    except asyncpg.PostgresError as exc:
        raise DBAPIError(sql, params, exc) from exc


# PostgreSQL's protocol binds at most 32,767 values to one statement. Up to this many rows
# the insert rides in the query's statement; more (a large POST /allocations) go in a batch.
ROWS_IN_ONE_STATEMENT = 100


@functools.lru_cache(maxsize=ROWS_IN_ONE_STATEMENT)
def _with_insert(query: Any, model: Any, columns: tuple[str, ...], rows: int) -> Any:
    """`query`, preceded by an INSERT of `rows` rows into `model`'s table as its CTE."""
    values: list[dict[str, Any]]
    values = [{c: bindparam(f"new_{i}_{c}") for c in columns} for i in range(rows)]
    return query.add_cte(insert(model).values(values).cte("new_rows"))


@functools.cache
def _insert_rows(model: Any, columns: tuple[str, ...]) -> Any:
    return insert(model).inline().values({c: bindparam(c) for c in columns})


async def insert_and_select(
    session: AsyncSession,
    model: Any,
    rows: list[dict[str, Any]],
    query: Any,
    params: dict[str, Any],
) -> Sequence[Any]:
    """Insert `rows` into `model`'s table and run `query` (via `execute_core`), which sees
    the table as it was before the insert, on every database.

    On PostgreSQL, up to `ROWS_IN_ONE_STATEMENT` rows, in one round trip: the INSERT is the
    query's CTE, and a statement does not see what its own CTEs change. Otherwise the query
    runs first, then the insert, in one batch (SQLite serialises its writers; on PostgreSQL
    the caller holds the locks that keep the two consistent).
    """
    if not rows:
        return await execute_core(session, query, params)
    columns = tuple(rows[0])
    if dialect_of(session) != "postgresql" or len(rows) > ROWS_IN_ONE_STATEMENT:
        found = await execute_core(session, query, params)
        await execute_core(session, _insert_rows(model, columns), rows)
        return found
    statement = _with_insert(query, model, columns, len(rows))
    values = {f"new_{i}_{c}": row[c] for i, row in enumerate(rows) for c in columns}
    return await execute_core(session, statement, params | values)


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
    insert = pg_insert if dialect_of(session) == "postgresql" else sqlite_insert
    await session.execute(insert(model).values(rows).on_conflict_do_nothing())
