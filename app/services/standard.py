"""The standard resource classes and traits, synced into the database at start."""

from __future__ import annotations

import os_resource_classes
import os_traits
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import insert_ignoring_duplicates
from app.models import ResourceClass, Trait

STANDARD_RESOURCE_CLASSES: tuple[str, ...] = tuple(os_resource_classes.STANDARDS)
STANDARD_TRAITS: frozenset[str] = frozenset(os_traits.get_traits())
CUSTOM_PREFIX = "CUSTOM_"


def is_custom(name: str) -> bool:
    return name.startswith(CUSTOM_PREFIX)


async def sync_standard_names(session: AsyncSession) -> None:
    """Insert whichever standard classes and traits are missing; several processes may race here."""
    have_classes = set((await session.scalars(select(ResourceClass.name))).all())
    await insert_ignoring_duplicates(
        session,
        ResourceClass,
        [
            {"id": index, "name": name}
            for index, name in enumerate(STANDARD_RESOURCE_CLASSES)
            if name not in have_classes
        ],
    )
    have_traits = set((await session.scalars(select(Trait.name))).all())
    await insert_ignoring_duplicates(
        session,
        Trait,
        [{"name": name} for name in sorted(STANDARD_TRAITS - have_traits)],
    )
