"""Capacity rules, shared by inventory changes, allocation writes and allocation candidates.

One implementation, so a candidate that is offered is a claim that will be accepted.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import Allocation, Inventory
from app.statements import ROWS_IN_ONE_STATEMENT, dialect_of, execute_core, insert_and_select


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


async def usage_by_provider_class(
    session: AsyncSession, provider_ids: Iterable[int]
) -> dict[tuple[int, int], int]:
    """Current usage, keyed (provider id, resource class id): the inventories' counts."""
    ids = list(set(provider_ids))
    if not ids:
        return {}
    rows = await session.execute(
        select(Inventory.resource_provider_id, Inventory.resource_class_id, Inventory.used).where(
            Inventory.resource_provider_id.in_(ids), Inventory.used > 0
        )
    )
    return {(rp, rc): int(used) for rp, rc, used in rows.all()}


# Built once (bound parameters): a write runs it for every (provider, class) it changes, in
# ascending (provider, class) order: two writers touching the same counts take their row locks
# in the same order, so neither waits on the other while holding what the other needs.
_ADD_USAGE = (
    update(Inventory)
    .where(
        Inventory.resource_provider_id == bindparam("rp"),
        Inventory.resource_class_id == bindparam("rc"),
    )
    # updated_at named as itself: a count moving is not a change of the inventory (its
    # Last-Modified stays), and nothing is left for SQLAlchemy to compute per execution.
    .values(used=Inventory.used + bindparam("delta"), updated_at=Inventory.updated_at)
)


async def add_usage(session: AsyncSession, deltas: Mapping[tuple[int, int], int]) -> None:
    """Move the inventories' counts by what a write allocated (+) or released (-)."""
    params = [
        {"rp": rp, "rc": rc, "delta": delta} for (rp, rc), delta in sorted(deltas.items()) if delta
    ]
    if params:
        await execute_core(session, _ADD_USAGE, params)


def usage_deltas(rows: Iterable[tuple[int, int, int]]) -> dict[tuple[int, int], int]:
    """(provider, class, amount) rows summed by (provider, class)."""
    total: dict[tuple[int, int], int] = defaultdict(int)
    for rp, rc, amount in rows:
        total[(rp, rc)] += amount
    return total


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
_LIMITS_AND_USAGE = select(*_LIMIT_COLUMNS, Inventory.used).where(
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

    `inserting`: allocation rows to insert, and to add to the inventories' counts, in that same
    round trip on PostgreSQL (an allocation write's); the usage read is the usage before them.
    The caller holds the locks of those rows' providers.
    """
    providers, classes = set(provider_ids), set(class_ids)
    if not providers or not classes:
        return {}
    params = {"providers": sorted(providers), "classes": sorted(classes)}
    rows_in = list(inserting)
    if rows_in and dialect_of(session) == "postgresql" and len(rows_in) <= ROWS_IN_ONE_STATEMENT:
        statement = _insert_count_and_read(tuple(rows_in[0]), len(rows_in))
        values = {f"new_{i}_{c}": row[c] for i, row in enumerate(rows_in) for c in rows_in[0]}
        rows = await execute_core(session, statement, params | values)
    else:
        rows = await insert_and_select(session, Allocation, rows_in, _LIMITS_AND_USAGE, params)
        added = ((r["resource_provider_id"], r["resource_class_id"], r["used"]) for r in rows_in)
        await add_usage(session, usage_deltas(added))
    return {
        (provider, class_): (InventoryLimits(*limits), int(used))
        for provider, class_, *limits, used in rows
    }


@functools.lru_cache(maxsize=ROWS_IN_ONE_STATEMENT)
def _insert_count_and_read(columns: tuple[str, ...], rows: int) -> Any:
    """PostgreSQL: insert the allocations, add them to their inventories' counts, and read the
    limits and counts as they were before, in one statement (its SELECT sees the snapshot its
    own CTEs do not change)."""
    new_rows = (
        insert(Allocation)
        .values([{c: bindparam(f"new_{i}_{c}") for c in columns} for i in range(rows)])
        .returning(Allocation.resource_provider_id, Allocation.resource_class_id, Allocation.used)
        .cte("new_rows")
    )
    added = (
        select(
            new_rows.c.resource_provider_id,
            new_rows.c.resource_class_id,
            func.sum(new_rows.c.used).label("amount"),
        )
        .group_by(new_rows.c.resource_provider_id, new_rows.c.resource_class_id)
        .subquery("added")
    )
    counted = (
        update(Inventory)
        .where(
            Inventory.resource_provider_id == added.c.resource_provider_id,
            Inventory.resource_class_id == added.c.resource_class_id,
        )
        .values(used=Inventory.used + added.c.amount, updated_at=Inventory.updated_at)
        .cte("counted")
    )
    return _LIMITS_AND_USAGE.add_cte(new_rows).add_cte(counted)
