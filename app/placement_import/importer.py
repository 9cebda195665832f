"""`allot db import-placement`: a Placement database copied into an empty allot, exactly.

One snapshot of the source, one transaction on the target: an interrupted or refused import
leaves allot as it was. Ids, uuids, names, generations and every inventory field come over
unchanged, so Nova's cached generations still match after the switch.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import delete, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from app.engines import make_engine
from app.models import (
    FIRST_CUSTOM_ID,
    Aggregate,
    Allocation,
    Consumer,
    ConsumerType,
    Inventory,
    Project,
    ProviderAggregate,
    ProviderTrait,
    ResourceClass,
    ResourceProvider,
    Trait,
    User,
)
from app.placement_import import rows as checks
from app.placement_import.copier import Owners, TableCopier
from app.placement_import.progress import Progress
from app.placement_import.source import TABLES, snapshot
from app.services.integrity import recount_usage
from app.services.standard import sync_standard_names
from app.settings import Settings


class ImportRefused(Exception):
    """The import was refused; nothing was written. `lines` says why, one line each."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__(lines[0] if lines else "refused")
        self.lines = lines


@dataclass
class Report:
    revision: str = ""
    copied: dict[str, int] = field(default_factory=dict)
    # Imported as they are: what allot would not have let happen, but Placement did.
    over_capacity: list[str] = field(default_factory=list)
    incomplete_consumers: list[str] = field(default_factory=list)
    consumers_without_allocations: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [f"source schema revision {self.revision}"]
        out += [f"copied {count} {table}" for table, count in self.copied.items()]
        for title, items in (
            ("providers using more than their capacity", self.over_capacity),
            ("consumers without project or user (written before 1.8)", self.incomplete_consumers),
            ("consumers without allocations", self.consumers_without_allocations),
        ):
            out.append(f"{len(items)} {title}" + (":" if items else ""))
            out += [f"  {item}" for item in items[:100]]
            if len(items) > 100:
                out.append(f"  (and {len(items) - 100} more)")
        return out


_ALLOT_TABLES = [
    Allocation,
    Consumer,
    ConsumerType,
    User,
    Project,
    ProviderAggregate,
    Aggregate,
    ProviderTrait,
    Inventory,
]


async def import_placement(
    settings: Settings,
    source_url: str,
    *,
    replace: bool = False,
    owners: Owners | None = None,
    progress: Progress | None = None,
) -> Report:
    progress = progress or Progress.silent()
    engine = make_engine(settings.database_url, settings)
    try:
        async with snapshot(source_url) as source, engine.connect() as target:
            report = Report(revision=await source.revision())
            totals = {table: await source.count(table) for table in TABLES}
            async with target.begin() as transaction:
                await _make_room(target, replace)
                problems = checks.Problems()
                copier = TableCopier(source, target, problems, progress, totals, owners or Owners())
                report.copied = await copier.copy_all()
                if problems.rows:
                    await transaction.rollback()
                    refusal = "the source holds rows allot cannot represent; nothing was written:"
                    raise ImportRefused([refusal, *problems.rows])
                # Placement sums allocations when asked; allot keeps each inventory's count.
                await recount_usage(target)
                await _anomalies(target, report)
                await _advance_sequences(target)
            return report
    finally:
        await engine.dispose()


async def _make_room(target: AsyncConnection, replace: bool) -> None:
    custom = [
        (ResourceProvider, None),
        (Consumer, None),
        (Aggregate, None),
        (ResourceClass, ResourceClass.id >= FIRST_CUSTOM_ID),
        (Trait, Trait.name.startswith("CUSTOM_")),
    ]
    held = []
    for model, where in custom:
        query = select(func.count()).select_from(model)
        if where is not None:
            query = query.where(where)
        if await target.scalar(query):
            held.append(model.__tablename__)
    if held and not replace:
        raise ImportRefused(
            [f"the target database is not empty ({', '.join(held)}); --replace replaces it"]
        )
    for model in _ALLOT_TABLES:
        await target.execute(delete(model))
    await target.execute(
        update(ResourceProvider).values(parent_provider_id=None, root_provider_id=None)
    )
    await target.execute(delete(ResourceProvider))
    await target.execute(delete(ResourceClass).where(ResourceClass.id >= FIRST_CUSTOM_ID))
    await target.execute(delete(Trait).where(Trait.name.startswith("CUSTOM_")))
    # The standard classes and traits, as a starting service would have them.
    async with AsyncSession(bind=target) as session:
        await sync_standard_names(session)


async def _anomalies(target: AsyncConnection, report: Report) -> None:
    # After recount_usage every inventory holds its usage: no allocation is summed here.
    over = await target.execute(
        text(
            "SELECT p.uuid, i.resource_class_id, "
            "(i.total - i.reserved) * i.allocation_ratio AS capacity, i.used "
            "FROM inventories i JOIN resource_providers p ON p.id = i.resource_provider_id "
            "WHERE i.used > (i.total - i.reserved) * i.allocation_ratio "
            "ORDER BY p.uuid, i.resource_class_id"
        )
    )
    report.over_capacity = [
        f"{uuid} class {rc}: {used} used of {int(capacity)}" for uuid, rc, capacity, used in over
    ]
    incomplete = await target.scalars(
        select(Consumer.uuid)
        .join(Project, Project.id == Consumer.project_id)
        .where(Project.external_id == checks.INCOMPLETE_CONSUMER_ID)
        .order_by(Consumer.uuid)
    )
    report.incomplete_consumers = list(incomplete)
    empty = await target.scalars(
        select(Consumer.uuid)
        .where(~select(Allocation.id).where(Allocation.consumer_id == Consumer.id).exists())
        .order_by(Consumer.uuid)
    )
    report.consumers_without_allocations = list(empty)


async def _advance_sequences(target: AsyncConnection) -> None:
    """Ids were copied, not drawn: PostgreSQL's sequences move past them."""
    if target.dialect.name != "postgresql":
        return
    for table in ("resource_providers", "inventories", "placement_aggregates", "traits",
                  "projects", "users", "consumer_types", "consumers", "allocations"):  # fmt: skip
        # Table names from the list above, never from input.
        sequence = (
            f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "  # noqa: S608
            f"coalesce((SELECT max(id) FROM {table}), 0) + 1, false)"
        )
        await target.execute(text(sequence))
