"""What allot relies on, checked against the rows (`allot db check`), and the usage counts
computed afresh (migration 0003's rule, which the Placement import applies too).

Every inventory's `used` equals the sum of its allocations; every allocation has an inventory
to count it; every provider's root is the root of its parent's tree.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

RECOUNT_USAGE = text(
    "UPDATE inventories SET used = (SELECT coalesce(sum(a.used), 0) FROM allocations a "
    "WHERE a.resource_provider_id = inventories.resource_provider_id "
    "AND a.resource_class_id = inventories.resource_class_id)"
)

_CHECKS = {
    "inventories whose used differs from the sum of their allocations": text(
        "SELECT p.uuid, i.resource_class_id, i.used, coalesce(s.total, 0) "
        "FROM inventories i JOIN resource_providers p ON p.id = i.resource_provider_id "
        "LEFT JOIN (SELECT resource_provider_id, resource_class_id, sum(used) AS total "
        "FROM allocations GROUP BY resource_provider_id, resource_class_id) s "
        "ON s.resource_provider_id = i.resource_provider_id "
        "AND s.resource_class_id = i.resource_class_id "
        "WHERE i.used <> coalesce(s.total, 0) ORDER BY p.uuid, i.resource_class_id"
    ),
    "allocations with no inventory to count them": text(
        "SELECT p.uuid, a.resource_class_id, a.consumer_id, a.used FROM allocations a "
        "JOIN resource_providers p ON p.id = a.resource_provider_id "
        "WHERE NOT EXISTS (SELECT 1 FROM inventories i "
        "WHERE i.resource_provider_id = a.resource_provider_id "
        "AND i.resource_class_id = a.resource_class_id) ORDER BY p.uuid"
    ),
    "providers whose root is not their parent's root": text(
        "SELECT p.uuid, p.root_provider_id, parent.root_provider_id FROM resource_providers p "
        "JOIN resource_providers parent ON parent.id = p.parent_provider_id "
        "WHERE p.root_provider_id <> parent.root_provider_id ORDER BY p.uuid"
    ),
    "roots that are not their own root": text(
        "SELECT uuid, root_provider_id FROM resource_providers "
        "WHERE parent_provider_id IS NULL AND root_provider_id <> id ORDER BY uuid"
    ),
}
_SHOWN = 50


async def differences(conn: AsyncConnection) -> list[str]:
    """One line per broken rule and per offending row (the first few); empty when all hold."""
    lines: list[str] = []
    for rule, query in _CHECKS.items():
        rows = (await conn.execute(query)).all()
        if rows:
            lines.append(f"{len(rows)} {rule}:")
            lines += [f"  {tuple(row)}" for row in rows[:_SHOWN]]
    return lines


async def recount_usage(conn: AsyncConnection) -> None:
    await conn.execute(RECOUNT_USAGE)
