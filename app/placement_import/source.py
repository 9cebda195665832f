"""A Placement database, read as one consistent snapshot.

PostgreSQL (asyncpg) or MySQL/MariaDB (aiomysql, which speaks through PyMySQL). Every table is
read inside one REPEATABLE READ transaction: on PostgreSQL that is a snapshot taken at its
first statement; on InnoDB, `START TRANSACTION WITH CONSISTENT SNAPSHOT` takes it at once. So
the import sees Placement as it was at one instant even while Placement keeps serving; writes
after that instant are not in it (README: Moving from Placement).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import make_url, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

# Placement 16.0.0's schema head; the revision before it differs only in indexes.
KNOWN_REVISIONS = {"a082b8bb98d0", "422ece571366"}

# What a client can observe, table by table, in the order they are copied.
TABLES: dict[str, tuple[str, ...]] = {
    "resource_classes": ("id", "name"),
    "traits": ("id", "name"),
    "resource_providers": (
        "id", "uuid", "name", "generation", "root_provider_id", "parent_provider_id",
        "created_at", "updated_at",
    ),
    "inventories": (
        "id", "resource_provider_id", "resource_class_id", "total", "reserved", "min_unit",
        "max_unit", "step_size", "allocation_ratio",
    ),
    "placement_aggregates": ("id", "uuid"),
    "resource_provider_aggregates": ("resource_provider_id", "aggregate_id"),
    "resource_provider_traits": ("resource_provider_id", "trait_id"),
    "projects": ("id", "external_id"),
    "users": ("id", "external_id"),
    "consumer_types": ("id", "name"),
    "consumers": (
        "id", "uuid", "project_id", "user_id", "generation", "consumer_type_id",
        "created_at", "updated_at",
    ),
    "allocations": ("id", "resource_provider_id", "consumer_id", "resource_class_id", "used"),
}  # fmt: skip


class SourceError(Exception):
    """The source cannot be imported; the message is one line for the operator."""


def _async_url(source_url: str) -> URL:
    try:
        url = make_url(source_url)
    except ArgumentError:
        raise SourceError("the source is not a database URL") from None
    backend = url.get_backend_name()
    if backend == "postgresql":
        return url.set(drivername="postgresql+asyncpg")
    if backend in ("mysql", "mariadb"):
        return url.set(drivername="mysql+aiomysql").update_query_dict({"charset": "utf8mb4"})
    raise SourceError(f"the source must be PostgreSQL or MySQL/MariaDB, not {backend!r}")


def describe(exc: BaseException) -> str:
    """One line naming the problem, without the URL's password."""
    cause = getattr(exc, "orig", None) or exc.__cause__ or exc
    return f"{type(cause).__name__}: {str(cause).splitlines()[0] if str(cause) else ''}".strip()


class Snapshot:
    def __init__(self, conn: AsyncConnection, dialect: str) -> None:
        self.conn = conn
        self.dialect = dialect

    async def revision(self) -> str:
        try:
            found = (await self.conn.execute(text("SELECT version_num FROM alembic_version"))).all()
        except DBAPIError:
            raise SourceError(
                "the source is not a Placement database (no alembic_version table)"
            ) from None
        revisions = {row[0] for row in found}
        if len(revisions) != 1 or not revisions <= KNOWN_REVISIONS:
            seen = ", ".join(sorted(revisions)) or "empty"
            raise SourceError(
                f"the source's Placement schema revision is {seen}; this allot imports "
                f"Placement 16.0.0's ({', '.join(sorted(KNOWN_REVISIONS))})"
            )
        return str(revisions.pop())

    # Table and column names below come from TABLES, never from input.
    async def count(self, table: str) -> int:
        counting = text(f"SELECT count(*) FROM {table}")  # noqa: S608
        return int((await self.conn.execute(counting)).scalar_one())

    async def rows(self, table: str, batch: int = 20_000) -> AsyncIterator[list[dict[str, Any]]]:
        """The table's rows in batches, in id order where it has one; streamed from the server."""
        columns = TABLES[table]
        order = "id" if "id" in columns else ", ".join(columns)
        statement = text(f"SELECT {', '.join(columns)} FROM {table} ORDER BY {order}")  # noqa: S608
        result = await self.conn.stream(statement.execution_options(yield_per=batch))
        async for partition in result.mappings().partitions(batch):
            yield [dict(row) for row in partition]


@asynccontextmanager
async def snapshot(source_url: str) -> AsyncIterator[Snapshot]:
    """One read-only, repeatable-read transaction on the source."""
    url = _async_url(source_url)
    try:
        engine = create_async_engine(url, isolation_level="REPEATABLE READ")
    except (NoSuchModuleError, ArgumentError) as exc:
        raise SourceError(f"cannot use the source URL: {describe(exc)}") from None
    try:
        try:
            conn = await engine.connect()
        except (SQLAlchemyError, OSError) as exc:
            raise SourceError(f"cannot connect to the source: {describe(exc)}") from None
        try:
            dialect = engine.dialect.name
            if dialect == "mysql":
                await conn.exec_driver_sql("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
            else:
                await conn.exec_driver_sql("SET TRANSACTION READ ONLY")
            yield Snapshot(conn, dialect)
        finally:
            await conn.rollback()
            await conn.close()
    finally:
        await engine.dispose()
