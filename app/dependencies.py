"""Shared FastAPI dependencies: the database session and the settings."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import Database
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


DatabaseDep = Annotated[Database, Depends(get_database)]
SessionDep = Annotated[AsyncSession, Depends(read_session)]
SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
