"""Shared fixtures: the app on SQLite and (with ALLOT_TEST_DATABASE_URL) on PostgreSQL,
real JWTs, an HTTP client that checks every error body, and a clean database per test.

Every test that takes `client` (or `app`) runs once per database backend.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import delete, event, make_url, text
from sqlalchemy.ext.asyncio import create_async_engine

from app.main import create_app
from app.models import (
    FIRST_CUSTOM_ID,
    Aggregate,
    Allocation,
    Consumer,
    ConsumerType,
    Inventory,
    Project,
    ProviderAggregate,
    ProviderTrait,
    ResourceClass,
    ResourceProvider,
    Trait,
    User,
)
from app.observability import json_formatter
from app.settings import Settings

TEST_SECRET = "allot-test-signing-key-not-a-real-secret-0123456789"
PG_URL = os.environ.get("ALLOT_TEST_DATABASE_URL")
BACKENDS = ["sqlite"] + (["postgresql"] if PG_URL else [])

# What must never appear in an error body: internals of any kind.
LEAK_PATTERNS = [
    re.compile(p, re.IGNORECASE)
    for p in (
        r"traceback",
        r"\bselect\b.+\bfrom\b",
        r"\binsert into\b",
        r"\bsqlalchemy\b",
        r"\basyncpg\b",
        r"\bsqlite",
        r"\bpsycopg",
        r'File "',
        r"\bapp\.[a-z_]+\.",
        r"\b[A-Z][a-zA-Z]+(Error|Exception)\b",
        r"/work/|site-packages",
        r"\.py\b",
        r"\bconstraint\b|duplicate key|\bviolates\b",
        r"\bErrno\b",
        r"\bat 0x[0-9a-f]+",
        r"\bcasbin\b|\bpyjwt\b|\bpydantic\b|\bstarlette\b",
    )
]

MINTED_TOKENS: set[str] = set()
LOG_LINES: list[str] = []


def pytest_sessionstart(session: pytest.Session) -> None:
    if os.environ.get("CI") == "true" and not PG_URL:
        raise pytest.UsageError("CI=true needs ALLOT_TEST_DATABASE_URL: PostgreSQL is not optional")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    # A whole run's log must not contain a single token the tests minted.
    leaked = [t for t in MINTED_TOKENS if any(t in line for line in LOG_LINES)]
    if leaked:
        print(f"\nSECURITY: {len(leaked)} bearer token(s) appeared in the service log")
        session.exitstatus = 1


class _Collect(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        LOG_LINES.append(self.format(record))


def test_settings(database_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "auth_jwt_secret": TEST_SECRET,
        "rate_limit": "off",
        "rate_limit_anon": "off",
        "log_level": "INFO",
        "write_retries": 20,
    }
    values.update(overrides)
    return Settings(**values)


async def reset_schema(url: str) -> None:
    """A fresh database at head: drop everything, then migrate (as the service would)."""
    engine = create_async_engine(url)
    async with engine.begin() as conn:
        await conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
        await conn.execute(text("CREATE SCHEMA public"))
    await engine.dispose()


@pytest.fixture(scope="session")
def sqlite_url() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="allot-test-") as tmp:
        yield f"sqlite+aiosqlite:///{Path(tmp) / 'allot.db'}"


@pytest.fixture(scope="session", params=BACKENDS)
def database_url(request: pytest.FixtureRequest, sqlite_url: str) -> str:
    return sqlite_url if request.param == "sqlite" else str(PG_URL)


@pytest.fixture(scope="session")
async def app(database_url: str) -> AsyncIterator[FastAPI]:
    from app.engines import make_engine
    from app.migrations_runner import upgrade

    if database_url.startswith("postgresql"):
        await reset_schema(database_url)
    settings = test_settings(database_url)
    engine = make_engine(database_url, settings)
    await upgrade(engine)
    await engine.dispose()
    application = create_app(settings)
    collector = _Collect()
    collector.setFormatter(json_formatter())
    logging.getLogger().addHandler(collector)
    async with application.router.lifespan_context(application):
        yield application
    logging.getLogger().removeHandler(collector)


async def create_scratch_database(backend: str, directory: Path) -> str:
    """A brand-new, empty database of a kind, for tests that need one of their own
    (PostgreSQL: a scratch database beside the test database; drop it when done)."""
    if backend == "sqlite":
        return f"sqlite+aiosqlite:///{directory / f'scratch-{uuid.uuid4().hex[:8]}.db'}"
    base = make_url(str(PG_URL))
    name = f"{base.database}_scratch_{uuid.uuid4().hex[:8]}"
    admin = create_async_engine(base, isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.execute(text(f'CREATE DATABASE "{name}"'))
    await admin.dispose()
    return base.set(database=name).render_as_string(hide_password=False)


async def drop_scratch_database(url: str) -> None:
    if not url.startswith("postgresql"):
        return  # a SQLite file goes with its temporary directory
    admin = create_async_engine(str(PG_URL), isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        name = make_url(url).database
        await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    await admin.dispose()


@asynccontextmanager
async def scratch_database(backend: str, directory: Path) -> AsyncIterator[str]:
    url = await create_scratch_database(backend, directory)
    try:
        yield url
    finally:
        await drop_scratch_database(url)


AppFactory = Callable[..., AbstractAsyncContextManager[FastAPI]]


@pytest.fixture
def app_factory(app: FastAPI, database_url: str) -> AppFactory:
    """Another running app on the same database with other settings (the database is still
    emptied after the test): `async with app_factory(policy="placement") as other: ...`."""

    @asynccontextmanager
    async def factory(**overrides: Any) -> AsyncIterator[FastAPI]:
        values = {"database_url": database_url, **overrides}
        application = create_app(test_settings(values.pop("database_url"), **values))
        async with application.router.lifespan_context(application):
            yield application

    return factory


# Children before parents: the order rows are removed in between tests.
_TABLES = [
    Allocation,
    Consumer,
    ConsumerType,
    Project,
    User,
    ProviderAggregate,
    Aggregate,
    ProviderTrait,
    Inventory,
]


@pytest.fixture(autouse=True)
async def clean_database(request: pytest.FixtureRequest) -> AsyncIterator[None]:
    """Every test starts from an empty service: standard classes and traits only."""
    yield
    if "app" not in request.fixturenames:
        return
    application: FastAPI = request.getfixturevalue("app")
    async with application.state.database.engine.begin() as conn:
        for model in _TABLES:
            await conn.execute(delete(model))
        # Providers point at each other (parent, root): clear the links, then the rows.
        await conn.execute(
            ResourceProvider.__table__.update().values(
                parent_provider_id=None, root_provider_id=None
            )
        )
        await conn.execute(delete(ResourceProvider))
        await conn.execute(delete(ResourceClass).where(ResourceClass.id >= FIRST_CUSTOM_ID))
        await conn.execute(delete(Trait).where(Trait.name.startswith("CUSTOM_")))


def mint(
    *,
    roles: list[str],
    project: str | None = None,
    user: str = "test-user",
    system: bool = False,
    settings: Settings | None = None,
) -> str:
    from app.authz.jwt_tokens import JwtAuthenticator

    authenticator = JwtAuthenticator(settings or test_settings("sqlite+aiosqlite://"))
    token = authenticator.mint(user=user, project=project, roles=roles, system=system)
    MINTED_TOKENS.add(token)
    return token


ADMIN_PROJECT = "admin-project"
PROJECT_A = "project-a"
PROJECT_B = "project-b"


def auth(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


@pytest.fixture(scope="session")
def tokens() -> dict[str, str]:
    """One token per kind of caller in the authorization matrix (DESIGN section 6)."""
    return {
        "admin": mint(roles=["admin"], project=ADMIN_PROJECT, user="admin"),
        "service": mint(roles=["service"], project="service-project", user="nova"),
        "system_reader": mint(roles=["reader"], system=True, user="auditor"),
        "member_a": mint(roles=["member", "reader"], project=PROJECT_A, user="alice"),
        "reader_a": mint(roles=["reader"], project=PROJECT_A, user="ann"),
        "member_b": mint(roles=["member", "reader"], project=PROJECT_B, user="bob"),
        "no_role": mint(roles=[], project=PROJECT_A, user="nobody"),
    }


def assert_generic_error(response: httpx.Response) -> None:
    """Every error body is the Placement envelope and says nothing about our internals."""
    body = response.text
    for pattern in LEAK_PATTERNS:
        assert not pattern.search(body), f"error body leaks internals ({pattern.pattern}): {body}"
    for token in MINTED_TOKENS:
        assert token not in body
    if response.headers.get("content-type", "").startswith("application/json"):
        error = response.json()["errors"][0]
        assert error["status"] == response.status_code
        assert error["request_id"] == response.headers["openstack-request-id"]
        assert error["code"]


async def _check_errors(response: httpx.Response) -> None:
    if response.status_code >= 400:
        await response.aread()
        assert_generic_error(response)


@contextmanager
def statements_sent(application: FastAPI) -> Iterator[list[str]]:
    """The first word of each statement the app sends its database meanwhile, in order,
    whichever runs it: SQLAlchemy, or (the hot path on PostgreSQL) asyncpg itself.
    Transaction control (BEGIN, COMMIT, ROLLBACK) is left out."""
    sent: list[str] = []

    def note(sql: str) -> None:
        word = sql.split()[0].rstrip(";").upper()
        if word not in ("BEGIN", "COMMIT", "ROLLBACK"):
            sent.append(word)

    def by_sqlalchemy(_conn: Any, _cursor: Any, sql: str, *_: Any) -> None:
        note(sql)

    def by_driver(query: Any) -> None:
        note(query.query)

    def watch(dbapi_conn: Any, *_: Any) -> None:
        if dbapi_conn is not None and application.state.database.dialect == "postgresql":
            dbapi_conn.driver_connection.add_query_logger(by_driver)

    def unwatch(dbapi_conn: Any, *_: Any) -> None:
        if dbapi_conn is not None and application.state.database.dialect == "postgresql":
            dbapi_conn.driver_connection.remove_query_logger(by_driver)

    engine = application.state.database.engine.sync_engine
    listeners = [
        (engine, "before_cursor_execute", by_sqlalchemy),
        (engine.pool, "checkout", watch),
        (engine.pool, "checkin", unwatch),
    ]
    for target, name, listener in listeners:
        event.listen(target, name, listener)
    try:
        yield sent
    finally:
        for target, name, listener in listeners:
            event.remove(target, name, listener)


def make_client(application: FastAPI, headers: dict[str, str]) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=application),
        base_url="http://allot.test",
        headers=headers,
        event_hooks={"response": [_check_errors]},
    )


@pytest.fixture
async def client(app: FastAPI, tokens: dict[str, str]) -> AsyncIterator[httpx.AsyncClient]:
    """An admin at the latest microversion; pass other headers per request to be someone else."""
    headers = {**auth(tokens["admin"]), "openstack-api-version": "placement latest"}
    async with make_client(app, headers) as c:
        yield c


@pytest.fixture
def as_(tokens: dict[str, str]) -> Callable[..., dict[str, str]]:
    """Headers for a caller of the matrix, optionally at a microversion: as_("member_a", "1.30")."""

    def headers(who: str, version: str = "latest") -> dict[str, str]:
        return {**auth(tokens[who]), "openstack-api-version": f"placement {version}"}

    return headers


@pytest.fixture(scope="session")
def keystone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A real Keystone for the session (about 15 s to start from nothing), shared by the
    tests of Keystone tokens on both databases."""
    from tests.keystone_server import Keystone

    server = Keystone(tmp_path_factory.mktemp("keystone"))
    server.start(fresh=True)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def keystone_settings(keystone: Any) -> dict[str, Any]:
    """Settings that make allot validate Keystone tokens as its own service user, which has
    just the `service` role in the `service` project (what Keystone's policy asks to
    validate other users' tokens)."""
    allot = keystone.user("allot", "service", ["service"])
    return {
        "auth_keystone_url": keystone.url,
        "auth_keystone_username": allot.name,
        "auth_keystone_password": allot.password,
        "auth_keystone_project": "service",
    }


async def assert_consistent(database_url: str) -> None:
    """`allot db check`'s rules hold: every inventory's count equals its allocations, every
    tree is whole. Concurrency and fault tests end with it."""
    from app.services.integrity import differences

    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as conn:
            assert await differences(conn) == []
    finally:
        await engine.dispose()
