"""Shared FastAPI dependencies: the database session, the settings, the microversion, and
the path parameter types the routers share."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import Depends, Path, Request
from sqlalchemy.ext.asyncio import AsyncSession

from app.authz.dependencies import current_subject
from app.db import Database
from app.microversion import MIN, Microversion, require
from app.schemas.common import CUSTOM_NAME_PATTERN
from app.settings import Settings


async def get_database(request: Request) -> Database:
    # async although it never awaits: FastAPI runs a plain `def` dependency in a worker
    # thread, a thread hop per request for an attribute read.
    database: Database = request.app.state.database
    return database


async def get_settings_dep(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def read_session(request: Request) -> AsyncIterator[AsyncSession]:
    database: Database = request.app.state.database
    async for session in database.reader():
        yield session


async def stale_read_session(request: Request) -> AsyncIterator[AsyncSession]:
    database: Database = request.app.state.database
    state = request.state

    def on_replica() -> None:
        state.read_from_replica = True  # app.middleware runs the request again if it fails

    primary = getattr(state, "read_again_on_primary", False)
    async for session in database.stale_reader(primary=primary, on_replica=on_replica):
        yield session


DatabaseDep = Annotated[Database, Depends(get_database)]
SessionDep = Annotated[AsyncSession, Depends(read_session)]
# For the reads that may be stale (lists, allocation candidates): the read replica while it is
# fresh enough (ALLOT_DATABASE_READ_MAX_LAG_MS), else the primary. Never to decide a write.
StaleSessionDep = Annotated[AsyncSession, Depends(stale_read_session)]
SettingsDep = Annotated[Settings, Depends(get_settings_dep)]


# A resource class or trait name in a path: bounded like the column that stores it.
PathName = Annotated[str, Path(max_length=255)]
# One a client creates: only custom names are theirs to make (the document says so, too).
CustomPathName = Annotated[str, Path(max_length=255, pattern=CUSTOM_NAME_PATTERN)]


async def version_dependency(request: Request) -> Microversion:
    # Negotiated by app.middleware. async: FastAPI would run a plain function in a worker
    # thread, once per request.
    version: Microversion = getattr(request.state, "microversion", MIN)
    return version


Version = Annotated[Microversion, Depends(version_dependency)]


def since(minor: int) -> Any:
    """A route dependency: the route exists from 1.<minor>; before that it is a 404.

    It authenticates first, so an anonymous caller always meets 401, whatever the version.
    """

    async def dependency(request: Request, _subject: Any = Depends(current_subject)) -> None:
        require(await version_dependency(request), minor)

    return Depends(dependency)
