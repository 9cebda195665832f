"""Statements as every write runs them: generations checked in the statements that bump
them, race-safe inserts, and the hot path, compiled once and run on the driver itself."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import asyncpg
from sqlalchemy import bindparam, insert, update
from sqlalchemy.dialects.postgresql import asyncpg as pg_asyncpg
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.errors import CONCURRENT_UPDATE, ApiError

# session.info key of a PostgreSQL write in progress: its driver connection (app.db).
DRIVER = "allot.driver"


class GenerationConflict(Exception):
    """A generation seen earlier in this transaction has changed: the unit must be retried."""


def dialect_of(session: AsyncSession) -> str:
    """Which database, "postgresql" or "sqlite", without taking a connection (a write's
    session may not have one yet)."""
    assert session.bind is not None
    return session.bind.dialect.name


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
    driver = session.info.get(DRIVER)
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
