"""Capacity rules, shared by inventory changes, allocation writes and allocation candidates.

One implementation, so a candidate that is offered is a claim that will be accepted.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from sqlalchemy import bindparam, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import Allocation, Inventory
from app.statements import insert_and_select


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

    @cached_property  # read for every amount tried by the candidate search
    def capacity(self) -> int:
        return capacity(self.total, self.reserved, self.allocation_ratio)

    @classmethod
    def of(cls, inventory: Any) -> InventoryLimits:
        """The limits of anything with the inventory fields (a row, a model, a request body)."""
        return cls(
            total=inventory.total,
            reserved=inventory.reserved,
            min_unit=inventory.min_unit,
            max_unit=inventory.max_unit,
            step_size=inventory.step_size,
            allocation_ratio=inventory.allocation_ratio,
        )

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

    def accepts(self, before: int, after: int) -> bool:
        """A write that changes usage from `before` to `after` stays within capacity, or at least
        does not make an existing overcommitment (inventory shrunk below usage) worse."""
        return after <= self.capacity or after <= before


def used_amount(provider_id: Any, class_id: Any) -> Any:
    """SQL for the current usage of one (provider, class), correlated to the outer query's
    columns: lets set-based reads (allocation candidates) fetch limits and usage in one pass."""
    return (
        select(func.coalesce(func.sum(Allocation.used), 0))
        .where(
            Allocation.resource_provider_id == provider_id,
            Allocation.resource_class_id == class_id,
        )
        .scalar_subquery()
    )


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


# The inventory columns an InventoryLimits is made of, in its fields' order.
LIMIT_FIELDS = (
    Inventory.total,
    Inventory.reserved,
    Inventory.min_unit,
    Inventory.max_unit,
    Inventory.step_size,
    Inventory.allocation_ratio,
)
_LIMIT_COLUMNS = (Inventory.resource_provider_id, Inventory.resource_class_id, *LIMIT_FIELDS)


# Built once (binding parameters): every allocation write runs it.
_LIMITS_AND_USAGE = select(
    *_LIMIT_COLUMNS,
    used_amount(Inventory.resource_provider_id, Inventory.resource_class_id).label("used"),
).where(
    Inventory.resource_provider_id.in_(bindparam("providers", expanding=True)),
    Inventory.resource_class_id.in_(bindparam("classes", expanding=True)),
)


async def limits_and_usage(
    session: AsyncSession,
    provider_ids: Iterable[int],
    class_ids: Iterable[int],
    *,
    inserting: Sequence[dict[str, Any]] = (),
) -> dict[tuple[int, int], tuple[InventoryLimits, int]]:
    """The inventories of some providers in some classes, each with its current usage, keyed
    (provider id, class id): one round trip.

    `inserting`: allocation rows to insert in that same round trip (an allocation write's);
    the usage read is the usage before them.
    """
    providers, classes = set(provider_ids), set(class_ids)
    if not providers or not classes:
        return {}
    params = {"providers": sorted(providers), "classes": sorted(classes)}
    rows = await insert_and_select(session, Allocation, list(inserting), _LIMITS_AND_USAGE, params)
    return {
        (provider, class_): (InventoryLimits(*limits), int(used))
        for provider, class_, *limits, used in rows
    }
