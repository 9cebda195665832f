"""Liveness, readiness and metrics, as an operator's probes and scraper see them."""

from __future__ import annotations

import httpx


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
