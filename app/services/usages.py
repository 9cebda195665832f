"""Usages per project (and user): the sum of what its consumers hold, by resource class.

From 1.38 they are grouped by consumer type, with a count of consumers per group. Sums and
counts are two plain GROUP BY queries (by type and class, then by type), so the same SQL
works on PostgreSQL and SQLite (Placement's single grouped query fails on PostgreSQL).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from sqlalchemy import distinct, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import Allocation, Consumer, ConsumerType, Project, ResourceClass, User
from app.services.consumers import UNKNOWN_TYPE

# consumer_type filter values with a meaning of their own (lower case: never a type name).
ALL_TYPES = "all"


def _mine(stmt: Any, project_id: str, user_id: str | None) -> Any:
    stmt = stmt.join(Consumer, Consumer.id == Allocation.consumer_id).join(
        Project, Project.id == Consumer.project_id
    )
    stmt = stmt.where(Project.external_id == project_id)
    if user_id is not None:
        stmt = stmt.join(User, User.id == Consumer.user_id).where(User.external_id == user_id)
    return stmt


async def totals(session: AsyncSession, project_id: str, user_id: str | None) -> dict[str, int]:
    """Before 1.38: {class: amount}."""
    stmt = _mine(
        select(ResourceClass.name, func.sum(Allocation.used))
        .select_from(Allocation)
        .join(ResourceClass, ResourceClass.id == Allocation.resource_class_id),
        project_id,
        user_id,
    ).group_by(ResourceClass.name)
    return {name: int(used) for name, used in (await session.execute(stmt)).all()}


async def by_consumer_type(
    session: AsyncSession,
    project_id: str,
    user_id: str | None,
    consumer_type: str | None,
) -> dict[str, dict[str, int]]:
    """1.38+: {type: {class: amount, ..., "consumer_count": n}}.

    `consumer_type`: None for every type, "all" for one group of everything, "unknown" for
    consumers written without a type, or a type name.
    """
    sums = _mine(
        select(Consumer.consumer_type_id, ResourceClass.name, func.sum(Allocation.used))
        .select_from(Allocation)
        .join(ResourceClass, ResourceClass.id == Allocation.resource_class_id),
        project_id,
        user_id,
    )
    counts = _mine(
        select(Consumer.consumer_type_id, func.count(distinct(Allocation.consumer_id))).select_from(
            Allocation
        ),
        project_id,
        user_id,
    )
    if consumer_type == UNKNOWN_TYPE:
        sums = sums.where(Consumer.consumer_type_id.is_(None))
        counts = counts.where(Consumer.consumer_type_id.is_(None))
    elif consumer_type not in (None, ALL_TYPES):
        named = select(ConsumerType.id).where(ConsumerType.name == consumer_type)
        sums = sums.where(Consumer.consumer_type_id.in_(named.scalar_subquery()))
        counts = counts.where(Consumer.consumer_type_id.in_(named.scalar_subquery()))
    sums = sums.group_by(Consumer.consumer_type_id, ResourceClass.name)
    counts = counts.group_by(Consumer.consumer_type_id)

    names = await _type_names(session)

    def group(type_id: int | None) -> str:
        if consumer_type == ALL_TYPES:
            return ALL_TYPES
        return names.get(type_id) or UNKNOWN_TYPE

    usages: dict[str, dict[str, int]] = defaultdict(dict)
    for type_id, rc, used in (await session.execute(sums)).all():
        entry = usages[group(type_id)]
        entry[rc] = entry.get(rc, 0) + int(used)
    for type_id, count in (await session.execute(counts)).all():
        entry = usages[group(type_id)]
        entry["consumer_count"] = entry.get("consumer_count", 0) + int(count)
    return dict(usages)


async def _type_names(session: AsyncSession) -> dict[int | None, str]:
    rows = await session.execute(select(ConsumerType.id, ConsumerType.name))
    return {id_: name for id_, name in rows.all()}
