"""Allocations as the reads show them: a consumer's, and a provider's (writes: allocations)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.authz import actions
from app.authz.access import Access
from app.models import Allocation, Consumer, ResourceClass, ResourceProvider
from app.services import consumers
from app.services.consumers import ConsumerRow


@dataclass(frozen=True)
class Held:
    """One allocation row, as the reads show it."""

    provider_uuid: str
    provider_generation: int
    consumer_uuid: str
    consumer_generation: int
    resource_class: str
    used: int
    created_at: datetime


def _held_query() -> Select[str, int, str, int, str, int, datetime]:
    return (
        select(
            ResourceProvider.uuid.label("rp_uuid"),
            ResourceProvider.generation.label("rp_generation"),
            Consumer.uuid.label("consumer_uuid"),
            Consumer.generation.label("consumer_generation"),
            ResourceClass.name.label("rc"),
            Allocation.used,
            Allocation.created_at,
        )
        .join(ResourceProvider, ResourceProvider.id == Allocation.resource_provider_id)
        .join(Consumer, Consumer.id == Allocation.consumer_id)
        .join(ResourceClass, ResourceClass.id == Allocation.resource_class_id)
    )


def _held(rows: Iterable[Any]) -> list[Held]:
    return [
        Held(
            provider_uuid=r.rp_uuid,
            provider_generation=r.rp_generation,
            consumer_uuid=r.consumer_uuid,
            consumer_generation=r.consumer_generation,
            resource_class=r.rc,
            used=r.used,
            created_at=r.created_at,
        )
        for r in rows
    ]


async def for_consumer(
    session: AsyncSession, access: Access, uuid: str
) -> tuple[ConsumerRow | None, list[Held]]:
    """A consumer and its allocations; (None, []) when unknown or another tenant's."""
    consumer = (await consumers.find(session, [uuid])).get(uuid)
    if consumer is None or not access.allows(actions.ALLOCATIONS_READ, consumer.project_id):
        return None, []
    rows = await session.execute(
        _held_query()
        .where(Allocation.consumer_id == consumer.id)
        .order_by(ResourceProvider.uuid, ResourceClass.name)
    )
    return consumer, _held(rows.all())


async def for_provider(session: AsyncSession, provider_id: int) -> list[Held]:
    rows = await session.execute(
        _held_query()
        .where(Allocation.resource_provider_id == provider_id)
        .order_by(Consumer.uuid, ResourceClass.name)
    )
    return _held(rows.all())
