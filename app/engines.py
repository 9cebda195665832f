"""Database engines: SQLite's pragmas and locking, the pool's listeners (live connections,
use counted for /metrics), and the settings of a transaction-mode pooler."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import event, make_url
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from app.observability import POOL_CHECKED_OUT
from app.settings import ConfigurationError, Settings


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
