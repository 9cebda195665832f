"""The application factory."""

from __future__ import annotations

import contextlib
import gc
import logging
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI

from app import docs, openapi
from app.authz.authentication import Authentication
from app.authz.policy import Policy
from app.db import Database
from app.error_handlers import install_handlers
from app.middleware import CorsMiddleware, RequestContextMiddleware
from app.migrations_runner import upgrade
from app.observability import configure_logging
from app.ratelimit import RateLimiter
from app.requests import accepts_json
from app.routers import (
    aggregates,
    allocation_candidates,
    allocations,
    inventories,
    provider_traits,
    reshaper,
    resource_classes,
    resource_providers,
    root,
    traits,
    usages,
)
from app.services.standard import sync_standard_names
from app.settings import Settings, get_settings

log = logging.getLogger("allot")

CORS_ALLOWED_HEADERS = [
    "openstack-api-version",
    "content-type",
    "authorization",
    "x-auth-token",
]


def _install_reload_on_sighup(policy: Policy) -> None:
    # Outside the main thread (tests) there is no signal handling: call policy.reload().
    with contextlib.suppress(ValueError):
        signal.signal(signal.SIGHUP, lambda *_: policy.reload())


def _freeze_startup_objects() -> None:
    """Move what exists once started (modules, routes, settings, metadata: ~150,000 objects)
    out of the cyclic collector's reach. Otherwise every full collection walks all of them,
    and one lands in a request now and then: 100 ms on a large /allocation_candidates."""
    gc.collect()
    gc.freeze()


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging(settings.log_level)
    policy = Policy(settings.policy)
    authentication = Authentication(settings)
    rate_limiter = RateLimiter(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        database = Database(settings)
        app.state.database = database
        await database.start()
        if settings.is_embedded:
            await upgrade(database.engine)
        await database.write(sync_standard_names)
        if not settings.rate_limit_storage.startswith("memory"):
            await rate_limiter.check_storage()
        _install_reload_on_sighup(policy)
        _freeze_startup_objects()
        log.info(
            "allot started",
            extra={"dialect": database.dialect, "policy": settings.policy},
        )
        try:
            yield
        finally:
            await authentication.close()
            await database.dispose()

    app = FastAPI(
        title="allot",
        summary="Resource allocation service speaking the OpenStack Placement API (1.0-1.39)",
        version="0.1.0",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url="/openapi.json" if settings.show_docs else None,
        dependencies=[Depends(accepts_json)],
        # Observability is the JSON log and /metrics (DESIGN section 9). FastAPI's native
        # OpenTelemetry would otherwise look up the global providers on every request.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.settings = settings
    app.state.policy = policy
    app.state.authentication = authentication
    app.state.rate_limiter = rate_limiter

    install_handlers(app)
    # Routes are matched in this order: the claim path (allocations) first after the root's.
    for module in (
        root,
        allocations,
        resource_classes,
        traits,
        resource_providers,
        inventories,
        aggregates,
        provider_traits,
        usages,
        allocation_candidates,
        reshaper,
    ):
        app.include_router(module.router)
    if settings.show_docs:
        docs.install(app)
    openapi.install(app)

    app.add_middleware(RequestContextMiddleware, max_body_bytes=settings.max_body_bytes)
    if settings.cors_origins:
        # Outermost, so preflights are answered before anything else looks at them.
        app.add_middleware(
            CorsMiddleware,
            origins=settings.cors_origins,
            methods=["GET", "POST", "PUT", "DELETE"],
            headers=CORS_ALLOWED_HEADERS,
            expose=[
                "openstack-api-version",
                "openstack-request-id",
                "x-openstack-request-id",
                "x-request-id",
            ],
        )
    return app
