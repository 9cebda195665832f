"""Traits: the standard ones from os-traits (read-only) and CUSTOM_ ones."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import exists, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.errors import bad_request, conflict, not_found
from app.models import ProviderTrait, Trait
from app.services.standard import is_custom
from app.statements import GenerationConflict
from app.timeutil import latest


async def list_names(
    session: AsyncSession,
    *,
    names: list[str] | None = None,
    prefix: str | None = None,
    associated: bool | None = None,
) -> tuple[list[str], datetime]:
    stmt = select(Trait.name, Trait.created_at, Trait.updated_at).order_by(Trait.name)
    if names is not None:
        stmt = stmt.where(Trait.name.in_(names))
    if prefix is not None:
        stmt = stmt.where(Trait.name.startswith(prefix, autoescape=True))
    if associated is not None:
        linked = exists().where(ProviderTrait.trait_id == Trait.id)
        stmt = stmt.where(linked if associated else ~linked)
    rows = (await session.execute(stmt)).all()
    return [r.name for r in rows], latest(among=(r.updated_at or r.created_at for r in rows))


async def get(session: AsyncSession, name: str) -> Trait:
    trait = await session.scalar(select(Trait).where(Trait.name == name))
    if trait is None:
        raise not_found(f"trait {name!r}")
    return trait


async def ids_by_name(session: AsyncSession, names: set[str]) -> dict[str, int]:
    """Ids of the named traits; those that do not exist are simply absent."""
    if not names:
        return {}
    rows = await session.execute(select(Trait.name, Trait.id).where(Trait.name.in_(names)))
    return {name: id_ for name, id_ in rows.all()}


async def ensure(session: AsyncSession, name: str) -> tuple[Trait, bool]:
    """Create a custom trait unless it exists: the trait, and whether it was created."""
    trait = await session.scalar(select(Trait).where(Trait.name == name))
    if trait is not None:
        return trait, False
    trait = Trait(name=name)
    session.add(trait)
    try:
        await session.flush()
    except IntegrityError as exc:
        raise GenerationConflict(f"trait insert raced: {exc.orig}") from None
    return trait, True


async def delete(session: AsyncSession, name: str) -> None:
    trait = await get(session, name)
    if not is_custom(trait.name):
        raise bad_request(f"cannot delete standard trait {name!r}")
    if await session.scalar(select(exists().where(ProviderTrait.trait_id == trait.id))):
        raise conflict(f"trait {name!r} in use")
    await session.delete(trait)
