"""Shared FastAPI dependencies: the database session and the settings."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import Database
from app.settings import Settings


def get_database(request: Request) -> Database:
    database: Database = request.app.state.database
    return database


def get_settings_dep(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def read_session(request: Request) -> AsyncIterator[AsyncSession]:
    async for session in get_database(request).reader():
        yield session


DatabaseDep = Annotated[Database, Depends(get_database)]
SessionDep = Annotated[AsyncSession, Depends(read_session)]
SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
