"""Liveness, readiness and metrics, as an operator's probes and scraper see them."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool


async def test_probes_need_no_token(client: httpx.AsyncClient) -> None:
    anonymous = {"authorization": ""}
    assert (await client.get("/healthz", headers=anonymous)).json() == {"status": "ok"}
    ready = await client.get("/readyz", headers=anonymous)
    assert ready.status_code == 200 and ready.json() == {"status": "ready"}


async def test_metrics_cover_requests_latency_retries_limits_and_the_pool(
    client: httpx.AsyncClient,
) -> None:
    await client.get("/traits")
    await client.get("/traits/NOT_A_TRAIT")
    assert (await client.get("/metrics", headers={"authorization": ""})).status_code == 401
    text = (await client.get("/metrics")).text
    assert 'allot_requests_total{method="GET",route="/traits",status="200"}' in text
    assert 'allot_requests_total{method="GET",route="/traits/{name}",status="404"}' in text
    assert 'allot_request_duration_seconds_bucket{le="0.005",method="GET",route="/traits"}' in text
    for family in (
        "allot_generation_conflict_retries_total",
        "allot_rate_limit_rejections_total",
        "allot_db_pool_checked_out",
    ):
        assert f"# TYPE {family.removesuffix('_total')}" in text, family
    pool = [line for line in text.splitlines() if line.startswith("allot_db_pool_checked_out ")]
    assert pool and float(pool[0].split()[1]) >= 0  # connections are returned, never negative


async def test_connections_the_database_closed_are_replaced_unseen(
    client: httpx.AsyncClient, database_url: str
) -> None:
    """A database restart (here: its backends terminated) between two requests costs a
    client nothing: pooled connections the server closed are replaced, not used."""
    assert (await client.get("/resource_providers")).status_code == 200  # the pool holds one
    if database_url.startswith("postgresql"):
        engine = create_async_engine(database_url, poolclass=NullPool)
        async with engine.connect() as conn:
            dropped = await conn.scalar(
                text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            )
        await engine.dispose()
        assert dropped
        await asyncio.sleep(0.2)  # the event loop reads the servers' goodbyes
    for _ in range(3):
        assert (await client.get("/resource_providers")).status_code == 200
        assert (await client.put(f"/traits/CUSTOM_{uuid.uuid4().hex.upper()}")).status_code == 201


async def test_a_connection_idle_for_long_is_pinged_before_use(
    client: httpx.AsyncClient, app: FastAPI, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One dropped silently on the way (no goodbye reaches the driver) is found by its ping."""
    assert (await client.get("/resource_providers")).status_code == 200
    pings: list[object] = []
    engine = app.state.database.engine.sync_engine
    monkeypatch.setattr(engine.dialect, "do_ping", lambda conn: pings.append(conn) or False)
    monkeypatch.setattr("app.engines.IDLE_PING_AFTER_S", 0.0)
    assert (await client.get("/resource_providers")).status_code == 200
    if database_url.startswith("postgresql"):
        assert pings  # the idle connection was pinged, failed it, and was replaced
