"""Version discovery and health (no token needed), and the metrics (admin, service, auditor)."""

from __future__ import annotations

from fastapi import APIRouter, Response
from sqlalchemy import text

from app import microversion
from app.authz.dependencies import MetricsRead
from app.dependencies import DatabaseDep, Version
from app.errors import UNAVAILABLE, ApiError
from app.httpcache import set_last_modified
from app.migrations_runner import at_head
from app.observability import metrics_payload
from app.timeutil import process_started

router = APIRouter()


@router.get("/", summary="Version discovery", tags=["root"])
async def versions(response: Response, version: Version) -> dict[str, object]:
    set_last_modified(response, version, process_started())
    return {
        "versions": [
            {
                "id": "v1.0",
                "max_version": str(microversion.MAX),
                "min_version": str(microversion.MIN),
                "status": "CURRENT",
                "links": [{"href": "", "rel": "self"}],
            }
        ]
    }


@router.get("/healthz", summary="The process is up", tags=["operations"])
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="The database is reachable and migrated",
    tags=["operations"],
    responses={503: {"description": "Not ready"}},
)
async def readyz(database: DatabaseDep) -> dict[str, str]:
    try:
        async with database.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
            if not await conn.run_sync(at_head):
                raise ApiError(503, UNAVAILABLE, log_detail="migrations are not at head")
    except ApiError:
        raise
    except Exception as exc:
        raise ApiError(
            503,
            UNAVAILABLE,
            log_detail=f"database: {type(exc).__name__}",
            headers={"Retry-After": "5"},
        ) from None
    return {"status": "ready"}


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    tags=["operations"],
    response_class=Response,
)
async def metrics(_: MetricsRead) -> Response:
    payload, content_type = metrics_payload()
    return Response(payload, media_type=content_type)
