"""`allot db verify-import`: what a client can observe, in Placement and in allot, compared.

Each view is a set of rows built by the same SQL on both sides (the table names are Placement's
in both schemas), except allocations, which Placement keys by consumer uuid and allot by id.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from app.engines import make_engine
from app.placement_import.source import snapshot
from app.settings import Settings

_PROVIDERS = (
    "SELECT p.uuid, p.name, p.generation, pp.uuid, rp.uuid FROM resource_providers p "
    "LEFT JOIN resource_providers pp ON pp.id = p.parent_provider_id "
    "LEFT JOIN resource_providers rp ON rp.id = p.root_provider_id"
)
_INVENTORIES = (
    "SELECT p.uuid, i.resource_class_id, i.total, i.reserved, i.min_unit, i.max_unit, "
    "i.step_size, i.allocation_ratio FROM inventories i "
    "JOIN resource_providers p ON p.id = i.resource_provider_id"
)
_USAGES = (
    "SELECT p.uuid, a.resource_class_id, sum(a.used) FROM allocations a "
    "JOIN resource_providers p ON p.id = a.resource_provider_id "
    "GROUP BY p.uuid, a.resource_class_id"
)
_CONSUMERS = (
    "SELECT c.uuid, c.generation, pr.external_id, u.external_id, ct.name FROM consumers c "
    "JOIN projects pr ON pr.id = c.project_id JOIN users u ON u.id = c.user_id "
    "LEFT JOIN consumer_types ct ON ct.id = c.consumer_type_id"
)
_TRAITS = (
    "SELECT p.uuid, t.name FROM resource_provider_traits pt JOIN traits t ON t.id = pt.trait_id "
    "JOIN resource_providers p ON p.id = pt.resource_provider_id"
)
_AGGREGATES = (
    "SELECT p.uuid, g.uuid FROM resource_provider_aggregates pa "
    "JOIN placement_aggregates g ON g.id = pa.aggregate_id "
    "JOIN resource_providers p ON p.id = pa.resource_provider_id"
)
_CUSTOM_CLASSES = "SELECT id, name FROM resource_classes WHERE id >= 10000"
_CUSTOM_TRAITS = "SELECT name FROM traits WHERE name LIKE 'CUSTOM!_%' ESCAPE '!'"
_PLACEMENT_ALLOCATIONS = (
    "SELECT a.consumer_id, p.uuid, a.resource_class_id, a.used FROM allocations a "
    "JOIN resource_providers p ON p.id = a.resource_provider_id"
)
_ALLOT_ALLOCATIONS = (
    "SELECT c.uuid, p.uuid, a.resource_class_id, a.used FROM allocations a "
    "JOIN consumers c ON c.id = a.consumer_id "
    "JOIN resource_providers p ON p.id = a.resource_provider_id"
)

VIEWS = {
    "providers (uuid, name, generation, parent, root)": (_PROVIDERS, _PROVIDERS),
    "inventories": (_INVENTORIES, _INVENTORIES),
    "usages": (_USAGES, _USAGES),
    "consumers (uuid, generation, project, user, type)": (_CONSUMERS, _CONSUMERS),
    "allocations": (_PLACEMENT_ALLOCATIONS, _ALLOT_ALLOCATIONS),
    "provider traits": (_TRAITS, _TRAITS),
    "provider aggregates": (_AGGREGATES, _AGGREGATES),
    "custom resource classes": (_CUSTOM_CLASSES, _CUSTOM_CLASSES),
    "custom traits": (_CUSTOM_TRAITS, _CUSTOM_TRAITS),
}
_SHOWN = 20
_BATCH = 20_000


def _normal(row: Any) -> tuple[Any, ...]:
    # Drivers differ in number types (Decimal sums, float ratios): compare values.
    return tuple(float(v) if isinstance(v, int | float) or type(v).__name__ == "Decimal" else v
                 for v in row)  # fmt: skip


async def _rows(conn: AsyncConnection, sql: str) -> AsyncIterator[tuple[Any, ...]]:
    result = await conn.stream(text(sql).execution_options(yield_per=_BATCH))
    async for partition in result.partitions(_BATCH):
        for row in partition:
            yield _normal(row)


async def _digests(conn: AsyncConnection, sql: str) -> set[int]:
    # A view of a million rows is kept as a million hashes, not a million tuples of strings.
    return {hash(row) async for row in _rows(conn, sql)}


async def _rows_with(conn: AsyncConnection, sql: str, digests: set[int]) -> list[Any]:
    return sorted([row async for row in _rows(conn, sql) if hash(row) in digests], key=str)


async def verify_import(settings: Settings, source_url: str) -> list[str]:
    """The differences, one line each; empty when allot holds what Placement holds."""
    differences: list[str] = []
    engine = make_engine(settings.database_url, settings)
    try:
        async with snapshot(source_url) as source, engine.connect() as target:
            await source.revision()
            for view, (placement_sql, allot_sql) in VIEWS.items():
                theirs = await _digests(source.conn, placement_sql)
                ours = await _digests(target, allot_sql)
                if theirs == ours:
                    continue
                missing = await _rows_with(source.conn, placement_sql, theirs - ours)
                extra = await _rows_with(target, allot_sql, ours - theirs)
                differences.append(
                    f"{view}: {len(theirs)} in Placement, {len(ours)} in allot, "
                    f"{len(missing)} only in Placement, {len(extra)} only in allot"
                )
                differences += [f"  only in Placement: {row}" for row in missing[:_SHOWN]]
                differences += [f"  only in allot: {row}" for row in extra[:_SHOWN]]
    finally:
        await engine.dispose()
    return differences
