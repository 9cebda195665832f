"""Resource providers: create, read, rename, re-parent, delete; ownership on every step.

A provider the caller may not see is answered exactly as a missing one (404). Writes to a
visible provider the caller does not own are 403.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete as sql_delete
from sqlalchemy import exists, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from app.authz import actions
from app.authz.access import Access
from app.authz.policy import Scope
from app.errors import (
    DUPLICATE_NAME,
    PROVIDER_CANNOT_DELETE_PARENT,
    PROVIDER_INUSE,
    ApiError,
    bad_request,
    conflict,
    not_found,
)
from app.models import (
    Allocation,
    Inventory,
    ProviderAggregate,
    ProviderTrait,
    ResourceClass,
    ResourceProvider,
)
from app.models.base import utcnow
from app.statements import GenerationConflict
from app.timeutil import latest

_Parent = aliased(ResourceProvider, name="parent_rp")
_Root = aliased(ResourceProvider, name="root_rp")


@dataclass(frozen=True)
class Provider:
    """One provider as the API shows it, with its parent's and root's UUIDs."""

    id: int
    uuid: str
    name: str
    generation: int
    parent_provider_uuid: str | None
    root_provider_uuid: str
    owner_project_id: str | None
    root_provider_id: int
    modified: datetime

    @property
    def owner(self) -> str | None:
        return self.owner_project_id


def shown() -> Any:
    """Providers with their parent and root UUIDs, ready for filters."""
    return (
        select(
            ResourceProvider.id,
            ResourceProvider.uuid,
            ResourceProvider.name,
            ResourceProvider.generation,
            _Parent.uuid.label("parent_uuid"),
            _Root.uuid.label("root_uuid"),
            ResourceProvider.owner_project_id,
            ResourceProvider.root_provider_id,
            ResourceProvider.created_at,
            ResourceProvider.updated_at,
        )
        .join(_Root, _Root.id == ResourceProvider.root_provider_id)
        .outerjoin(_Parent, _Parent.id == ResourceProvider.parent_provider_id)
    )


def from_row(row: Any) -> Provider:
    return Provider(
        id=row.id,
        uuid=row.uuid,
        name=row.name,
        generation=row.generation,
        parent_provider_uuid=row.parent_uuid,
        root_provider_uuid=row.root_uuid,
        owner_project_id=row.owner_project_id,
        root_provider_id=row.root_provider_id,
        modified=latest(row.updated_at or row.created_at),
    )


def readable(access: Access) -> Any:
    """The list filter: providers this caller may see."""
    return access.where(actions.PROVIDERS_READ, ResourceProvider.owner_project_id)


async def get(session: AsyncSession, access: Access, uuid: str) -> Provider:
    """A visible provider by UUID; 404 when missing or not visible."""
    row = (
        await session.execute(shown().where(ResourceProvider.uuid == uuid, readable(access)))
    ).first()
    if row is None:
        raise not_found(f"resource provider {uuid[:64]!r}")
    return from_row(row)


async def get_for_write(session: AsyncSession, access: Access, uuid: str) -> Provider:
    """A provider the caller may change: 404 when not visible, 403 when visible but not owned."""
    provider = await get(session, access, uuid)
    access.require(actions.PROVIDERS_WRITE, provider.owner, provider.uuid)
    return provider


async def list_matching(session: AsyncSession, access: Access, *conditions: Any) -> list[Provider]:
    stmt = shown().where(readable(access), *conditions).order_by(ResourceProvider.id)
    return [from_row(row) for row in (await session.execute(stmt)).all()]


def last_modified(providers: Sequence[Provider]) -> datetime:
    return latest(among=(p.modified for p in providers))


def owner_for(access: Access, requested: str | None, given: bool) -> str | None:
    """The owner a new provider gets.

    Admin and service set any owner (or none: shared). Anyone else creates providers owned by
    their own project; naming another project (or none, explicitly) is refused with 403.
    """
    if access.scope(actions.PROVIDERS_CREATE) == Scope.ANY:
        return requested
    own = access.project_id
    if given and requested != own:
        access.require(actions.PROVIDERS_CREATE, requested, "owner_project_id")
    access.require(actions.PROVIDERS_CREATE, own, "resource provider")
    return own


async def _check_unique(session: AsyncSession, *, name: str, uuid: str | None = None) -> None:
    if await session.scalar(select(exists().where(ResourceProvider.name == name))):
        raise conflict(f"provider name {name[:64]!r} exists", DUPLICATE_NAME)
    if uuid and await session.scalar(select(exists().where(ResourceProvider.uuid == uuid))):
        raise conflict(f"provider uuid {uuid} exists", DUPLICATE_NAME)


async def _parent(session: AsyncSession, access: Access, parent_uuid: str) -> Provider:
    """The parent named in a body: 400 when missing or invisible, 403 when not one's own."""
    try:
        parent = await get(session, access, parent_uuid)
    except ApiError:
        raise bad_request(f"parent provider {parent_uuid} does not exist") from None
    # Hanging a child under a provider changes that provider's tree: it must be one's own.
    access.require(actions.PROVIDERS_WRITE, parent.owner, parent.uuid)
    return parent


async def create(
    session: AsyncSession,
    access: Access,
    *,
    name: str,
    uuid: str,
    parent_uuid: str | None,
    owner: str | None,
) -> Provider:
    if parent_uuid is not None and parent_uuid == uuid:
        raise bad_request("a provider cannot be its own parent")
    parent = await _parent(session, access, parent_uuid) if parent_uuid else None
    if parent is not None:
        # Wait for any re-parenting of the parent's tree, then take its root as it is now.
        await session.execute(
            select(ResourceProvider.id).where(ResourceProvider.id == parent.id).with_for_update()
        )
        parent = await _parent(session, access, parent.uuid)
    await _check_unique(session, name=name, uuid=uuid)
    rp = ResourceProvider(
        uuid=uuid,
        name=name,
        generation=0,
        parent_provider_id=parent.id if parent else None,
        root_provider_id=parent.root_provider_id if parent else None,
        owner_project_id=owner,
    )
    session.add(rp)
    try:
        await session.flush()
    except IntegrityError as exc:
        # Another writer took the name or uuid between our check and the insert: run again.
        raise GenerationConflict(f"provider insert raced: {exc.orig}") from None
    if parent is None:
        rp.root_provider_id = rp.id
        await session.flush()
    return await get(session, access, uuid)


async def _subtree_ids(session: AsyncSession, provider: Provider) -> set[int]:
    """The provider and all its descendants (walked within its tree)."""
    rows = (
        await session.execute(
            select(ResourceProvider.id, ResourceProvider.parent_provider_id).where(
                ResourceProvider.root_provider_id == provider.root_provider_id
            )
        )
    ).all()
    children: dict[int, list[int]] = {}
    for child, parent in rows:
        if parent is not None:
            children.setdefault(parent, []).append(child)
    found, todo = {provider.id}, [provider.id]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


async def _lock_trees(
    session: AsyncSession, access: Access, provider: Provider, parent: Provider | None
) -> tuple[Provider, Provider | None]:
    """Lock every provider of the trees a re-parenting touches (ascending id order), then
    read both ends again: two concurrent moves cannot build a loop or leave stale roots.
    A tree that changed while we waited means the unit runs again."""
    roots = {provider.root_provider_id} | ({parent.root_provider_id} if parent else set())
    await session.execute(
        select(ResourceProvider.id)
        .where(ResourceProvider.root_provider_id.in_(roots))
        .order_by(ResourceProvider.id)
        .with_for_update()
    )
    provider = await get(session, access, provider.uuid)
    if parent is not None:
        parent = await get(session, access, parent.uuid)
    now = {provider.root_provider_id} | ({parent.root_provider_id} if parent else set())
    if now != roots:
        raise GenerationConflict("a provider tree changed during a re-parenting")
    return provider, parent


async def _reparent(
    session: AsyncSession,
    access: Access,
    provider: Provider,
    parent_uuid: str | None,
    allow_reparenting: bool,
) -> None:
    """Set a new parent (or none), moving the whole subtree to the new root."""
    if parent_uuid == provider.parent_provider_uuid:
        return
    if provider.parent_provider_uuid is not None and not allow_reparenting:
        raise bad_request("re-parenting or un-parenting needs microversion 1.37")
    parent = await _parent(session, access, parent_uuid) if parent_uuid else None
    provider, parent = await _lock_trees(session, access, provider, parent)
    if parent_uuid == provider.parent_provider_uuid:
        return
    if provider.parent_provider_uuid is not None and not allow_reparenting:
        raise bad_request("re-parenting or un-parenting needs microversion 1.37")
    subtree = await _subtree_ids(session, provider)
    if parent is None:
        new_parent_id, new_root_id = None, provider.id
    else:
        if parent.id in subtree:
            raise bad_request("the new parent would create a loop in the provider tree")
        new_parent_id, new_root_id = parent.id, parent.root_provider_id
    await session.execute(
        update(ResourceProvider)
        .where(ResourceProvider.id == provider.id)
        .values(parent_provider_id=new_parent_id)
        .execution_options(synchronize_session=False)
    )
    await session.execute(
        update(ResourceProvider)
        .where(ResourceProvider.id.in_(subtree))
        .values(root_provider_id=new_root_id)
        .execution_options(synchronize_session=False)
    )


async def update_provider(
    session: AsyncSession,
    access: Access,
    uuid: str,
    *,
    name: str,
    parent: tuple[bool, str | None],
    owner: tuple[bool, str | None],
    allow_reparenting: bool,
) -> Provider:
    """PUT: rename, re-parent (from 1.14; moving and un-parenting from 1.37), change owner.

    As in Placement, this does not move the provider's generation: it guards inventories,
    traits, aggregates and allocations, which a rename does not touch.
    """
    provider = await get_for_write(session, access, uuid)
    values: dict[str, Any] = {}
    if name != provider.name:
        if await session.scalar(select(exists().where(ResourceProvider.name == name))):
            raise conflict(f"provider name {name[:64]!r} exists", DUPLICATE_NAME)
        values["name"] = name
    owner_given, new_owner = owner
    if owner_given and new_owner != provider.owner:
        # Giving a provider away (or making it shared) takes the right to write the result.
        access.require(actions.PROVIDERS_WRITE, new_owner, "owner_project_id")
        values["owner_project_id"] = new_owner
    parent_given, parent_uuid = parent
    if parent_given:
        await _reparent(session, access, provider, parent_uuid, allow_reparenting)
    if values or parent_given:
        stmt = update(ResourceProvider).where(ResourceProvider.id == provider.id)
        try:
            await session.execute(stmt.values(**values, updated_at=utcnow()))
        except IntegrityError as exc:
            raise GenerationConflict(f"provider update raced: {exc.orig}") from None
    return await get(session, access, uuid)


async def delete(session: AsyncSession, access: Access, uuid: str) -> None:
    provider = await get_for_write(session, access, uuid)
    if await session.scalar(
        select(exists().where(ResourceProvider.parent_provider_id == provider.id))
    ):
        raise conflict(f"provider {uuid} has children", PROVIDER_CANNOT_DELETE_PARENT)
    if await session.scalar(select(exists().where(Allocation.resource_provider_id == provider.id))):
        raise conflict(f"provider {uuid} has allocations", PROVIDER_INUSE)
    for model in (Inventory, ProviderTrait, ProviderAggregate):
        await session.execute(sql_delete(model).where(model.resource_provider_id == provider.id))
    await session.execute(
        update(ResourceProvider)
        .where(ResourceProvider.id == provider.id)
        .values(root_provider_id=None)
        .execution_options(synchronize_session=False)
    )
    try:
        await session.execute(
            sql_delete(ResourceProvider).where(ResourceProvider.id == provider.id)
        )
    except IntegrityError as exc:
        # A child or an allocation arrived meanwhile: decide again from the start.
        raise GenerationConflict(f"provider delete raced: {exc.orig}") from None


async def usages(session: AsyncSession, access: Access, uuid: str) -> tuple[int, dict[str, int]]:
    """GET /resource_providers/{uuid}/usages: the generation and usage per class in use."""
    provider = await get(session, access, uuid)
    # Every class the provider has inventory of, with zero when nothing is allocated.
    rows = await session.execute(
        select(ResourceClass.name, Inventory.used)
        .join(ResourceClass, ResourceClass.id == Inventory.resource_class_id)
        .where(Inventory.resource_provider_id == provider.id)
        .order_by(ResourceClass.name)
    )
    return provider.generation, {name: int(used) for name, used in rows.all()}
