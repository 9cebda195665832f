"""When things break: a generic 500 that leaves nothing behind; 503 while the database is gone."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from app.main import create_app
from app.models import ResourceClass
from app.services import resource_classes
from tests.conftest import LOG_LINES, PG_URL, make_client
from tests.conftest import test_settings as settings_for
from tests.pg_proxy import PgProxy


async def test_a_failing_service_call_is_a_generic_500_and_rolls_back(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def half_done_then_broken(session: AsyncSession, name: str) -> ResourceClass:
        session.add(ResourceClass(id=10_500, name=name))
        await session.flush()  # the row is written inside the transaction...
        raise RuntimeError("KeyError in app.services.resource_classes: SELECT secret FROM x")

    monkeypatch.setattr(resource_classes, "create", half_done_then_broken)
    response = await client.post("/resource_classes", json={"name": "CUSTOM_HALF"})

    assert response.status_code == 500
    error = response.json()["errors"][0]
    assert error["code"] == "allot.internal"
    assert error["detail"] == "An internal error occurred."
    assert "secret" not in response.text and "RuntimeError" not in response.text
    # ...and is gone: the transaction was rolled back.
    assert (await client.get("/resource_classes/CUSTOM_HALF")).status_code == 404
    # The log has the story, under the same request id.
    story = [line for line in LOG_LINES if error["request_id"] in line]
    assert any("RuntimeError" in line for line in story)


@contextlib.asynccontextmanager
async def _app_behind_proxy(port: int) -> AsyncIterator[Any]:
    assert PG_URL
    parts = urlsplit(PG_URL)
    proxy = PgProxy((parts.hostname or "127.0.0.1", parts.port or 5432))
    await proxy.start(port)
    url = PG_URL.replace(parts.netloc, f"{parts.username}@127.0.0.1:{port}")
    try:
        application = create_app(settings_for(url, database_pool_timeout=2))
        async with application.router.lifespan_context(application):
            yield application, proxy
    finally:
        with contextlib.suppress(Exception):
            await proxy.cut_all()


@pytest.mark.skipif(not PG_URL, reason="needs PostgreSQL (ALLOT_TEST_DATABASE_URL; CI sets it)")
async def test_database_unreachable_is_503_with_retry_after(tokens: dict[str, str]) -> None:
    headers = {
        "authorization": f"Bearer {tokens['admin']}",
        "openstack-api-version": "placement latest",
    }
    async with (
        _app_behind_proxy(8520) as (application, proxy),
        make_client(application, headers) as c,
    ):
        assert (await c.get("/resource_classes")).status_code == 200
        assert (await c.get("/readyz")).status_code == 200
        await proxy.cut_all()
        for method, path, body in (
            ("GET", "/resource_classes", None),
            ("POST", "/resource_classes", {"name": "CUSTOM_NEVER"}),
            ("GET", "/readyz", None),
        ):
            response = await c.request(method, path, json=body)
            assert response.status_code == 503, (path, response.text)
            assert response.json()["errors"][0]["code"] == "allot.unavailable"
            assert int(response.headers["retry-after"]) > 0
    # Nothing was half-written while the database was away.
    engine = create_async_engine(PG_URL)
    async with engine.connect() as conn:
        found = await conn.scalar(
            text("SELECT count(*) FROM resource_classes WHERE name = 'CUSTOM_NEVER'")
        )
    await engine.dispose()
    assert found == 0


async def test_readyz_is_503_until_migrations_are_at_head(app: FastAPI) -> None:
    engine = app.state.database.engine
    async with engine.begin() as conn:
        head = await conn.scalar(text("SELECT version_num FROM alembic_version"))
        await conn.execute(text("UPDATE alembic_version SET version_num = 'behind'"))
    try:
        async with make_client(app, {}) as anonymous:
            behind = await anonymous.get("/readyz")
            assert behind.status_code == 503
            assert behind.json()["errors"][0]["code"] == "allot.unavailable"
            # The process itself is fine: liveness does not depend on the database.
            assert (await anonymous.get("/healthz")).status_code == 200
    finally:
        async with engine.begin() as conn:
            await conn.execute(text("UPDATE alembic_version SET version_num = :v"), {"v": head})
    async with make_client(app, {}) as anonymous:
        assert (await anonymous.get("/readyz")).status_code == 200


async def test_other_database_errors_are_a_generic_500_not_503(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def violates(session: AsyncSession, name: str) -> ResourceClass:
        session.add(ResourceClass(id=10_600, name=name))
        await session.flush()
        # Standard class 0 exists: the database itself refuses (an IntegrityError).
        await session.execute(
            text("INSERT INTO resource_classes (id, name, created_at) VALUES (0, 'X', :now)"),
            {"now": datetime.now(UTC)},
        )
        raise AssertionError("unreachable")

    monkeypatch.setattr(resource_classes, "create", violates)
    response = await client.post("/resource_classes", json={"name": "CUSTOM_TWICE"})
    assert response.status_code == 500
    assert response.json()["errors"][0]["code"] == "allot.internal"
    assert "retry-after" not in response.headers
    assert (await client.get("/resource_classes/CUSTOM_TWICE")).status_code == 404
