"""Applying and checking the Alembic history from inside the service and the CLI."""

from __future__ import annotations

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

# An arbitrary constant: PostgreSQL advisory lock key serialising concurrent upgrades.
_UPGRADE_LOCK = 7_123_001


class _NoContextChatter(logging.Filter):
    """Alembic logs its dialect at INFO whenever a context is made: twice per /readyz probe."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(("Context impl", "Will assume"))


logging.getLogger("alembic.runtime.migration").addFilter(_NoContextChatter())


def migrations_dir() -> Path:
    here = Path(__file__).resolve().parent.parent / "migrations"
    return here if here.is_dir() else Path.cwd() / "migrations"


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    return config


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def at_head(connection: Connection) -> bool:
    current = MigrationContext.configure(connection).get_current_revision()
    return current == head_revision()


def _upgrade(connection: Connection) -> None:
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _UPGRADE_LOCK})
    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


async def upgrade(engine: AsyncEngine) -> None:
    """Bring the schema to head; safe when several processes do it at once."""
    async with engine.begin() as connection:
        await connection.run_sync(_upgrade)
