"""The standard resource classes and traits, synced into the database at start."""

from __future__ import annotations

import os_resource_classes
import os_traits
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import ResourceClass, Trait
from app.statements import insert_ignoring_duplicates

STANDARD_RESOURCE_CLASSES: tuple[str, ...] = tuple(os_resource_classes.STANDARDS)
STANDARD_TRAITS: frozenset[str] = frozenset(os_traits.get_traits())
CUSTOM_PREFIX = "CUSTOM_"
# A standard class's id is its index in os-resource-classes (as in Placement): fixed for the
# life of a deployment, so writes naming only standard classes need no lookup.
_STANDARD_CLASS_IDS: dict[str, int] = {
    name: index for index, name in enumerate(STANDARD_RESOURCE_CLASSES)
}


def is_custom(name: str) -> bool:
    return name.startswith(CUSTOM_PREFIX)


def standard_class_id(name: str) -> int | None:
    return _STANDARD_CLASS_IDS.get(name)


async def sync_standard_names(session: AsyncSession) -> None:
    """Insert whichever standard classes and traits are missing; several processes may race here."""
    have_classes = set((await session.scalars(select(ResourceClass.name))).all())
    await insert_ignoring_duplicates(
        session,
        ResourceClass,
        [
            {"id": index, "name": name}
            for name, index in _STANDARD_CLASS_IDS.items()
            if name not in have_classes
        ],
    )
    have_traits = set((await session.scalars(select(Trait.name))).all())
    await insert_ignoring_duplicates(
        session,
        Trait,
        [{"name": name} for name in sorted(STANDARD_TRAITS - have_traits)],
    )
