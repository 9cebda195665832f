"""Resource classes: the standard ones (read-only) and operators' CUSTOM_ ones."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import exists, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.errors import DUPLICATE_NAME, bad_request, conflict, not_found
from app.models import FIRST_CUSTOM_ID, Allocation, Inventory, ResourceClass
from app.services.standard import is_custom
from app.statements import GenerationConflict
from app.timeutil import latest


async def list_all(session: AsyncSession) -> list[ResourceClass]:
    return list((await session.scalars(select(ResourceClass).order_by(ResourceClass.id))).all())


async def get(session: AsyncSession, name: str) -> ResourceClass:
    rc = await session.scalar(select(ResourceClass).where(ResourceClass.name == name))
    if rc is None:
        raise not_found(f"resource class {name!r}")
    return rc


async def ids_by_name(session: AsyncSession, names: set[str]) -> dict[str, int]:
    """Ids of the named classes; those that do not exist are simply absent."""
    if not names:
        return {}
    rows = await session.execute(
        select(ResourceClass.name, ResourceClass.id).where(ResourceClass.name.in_(names))
    )
    return {name: id_ for name, id_ in rows.all()}


async def _next_custom_id(session: AsyncSession) -> int:
    highest = await session.scalar(
        select(func.max(ResourceClass.id)).where(ResourceClass.id >= FIRST_CUSTOM_ID)
    )
    return FIRST_CUSTOM_ID if highest is None else highest + 1


async def _insert(session: AsyncSession, name: str) -> ResourceClass:
    rc = ResourceClass(id=await _next_custom_id(session), name=name)
    session.add(rc)
    try:
        await session.flush()
    except IntegrityError as exc:
        # Another writer took the id (or the name) first: run the unit again.
        raise GenerationConflict(f"resource class insert raced: {exc.orig}") from None
    return rc


async def create(session: AsyncSession, name: str) -> ResourceClass:
    if await session.scalar(select(exists().where(ResourceClass.name == name))):
        raise conflict(f"resource class {name!r} exists", DUPLICATE_NAME)
    return await _insert(session, name)


async def ensure(session: AsyncSession, name: str) -> bool:
    """PUT from 1.7: create the custom class unless it exists. True when created."""
    if await session.scalar(select(exists().where(ResourceClass.name == name))):
        return False
    await _insert(session, name)
    return True


async def rename(session: AsyncSession, name: str, new_name: str) -> ResourceClass:
    """PUT before 1.7: rename a custom class."""
    rc = await get(session, name)
    if not is_custom(rc.name):
        raise bad_request(f"cannot rename standard class {name!r}")
    if new_name != name and await session.scalar(
        select(exists().where(ResourceClass.name == new_name))
    ):
        raise conflict(f"resource class {new_name!r} exists", DUPLICATE_NAME)
    rc.name = new_name
    await session.flush()
    return rc


async def delete(session: AsyncSession, name: str) -> None:
    rc = await get(session, name)
    if not is_custom(rc.name):
        raise bad_request(f"cannot delete standard class {name!r}")
    in_use = await session.scalar(
        select(
            exists().where(Inventory.resource_class_id == rc.id)
            | exists().where(Allocation.resource_class_id == rc.id)
        )
    )
    if in_use:
        raise conflict(f"resource class {name!r} in use")
    await session.delete(rc)


def last_modified(classes: list[ResourceClass]) -> datetime:
    return latest(among=(rc.updated_at or rc.created_at for rc in classes))
