"""Capacity rules, shared by inventory changes, allocation writes and allocation candidates.

One implementation, so a candidate that is offered is a claim that will be accepted.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import Allocation


def capacity(total: int, reserved: int, allocation_ratio: float) -> int:
    """How much of a class a provider can hand out: (total - reserved) * allocation_ratio."""
    return int((total - reserved) * allocation_ratio)


@dataclass(frozen=True)
class InventoryLimits:
    total: int
    reserved: int
    min_unit: int
    max_unit: int
    step_size: int
    allocation_ratio: float

    @property
    def capacity(self) -> int:
        return capacity(self.total, self.reserved, self.allocation_ratio)

    def amount_ok(self, amount: int) -> bool:
        """min_unit <= amount <= max_unit and amount is a multiple of step_size."""
        return (
            self.min_unit <= amount <= self.max_unit
            and self.step_size > 0
            and amount % self.step_size == 0
        )

    def fits(self, used: int, amount: int) -> bool:
        """A new `amount` fits beside `used`, and is a valid amount on its own."""
        return self.amount_ok(amount) and used + amount <= self.capacity


async def usage_by_provider_class(
    session: AsyncSession, provider_ids: Iterable[int]
) -> dict[tuple[int, int], int]:
    """Current usage, keyed (provider id, resource class id)."""
    ids = list(set(provider_ids))
    if not ids:
        return {}
    rows = await session.execute(
        select(
            Allocation.resource_provider_id, Allocation.resource_class_id, func.sum(Allocation.used)
        )
        .where(Allocation.resource_provider_id.in_(ids))
        .group_by(Allocation.resource_provider_id, Allocation.resource_class_id)
    )
    return {(rp, rc): int(used) for rp, rc, used in rows.all()}
