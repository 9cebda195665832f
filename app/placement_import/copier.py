"""Copying Placement's tables into allot's, batch by batch, table by table: each row checked
(rows.py), mapped to allot's ids where they differ (traits, consumers), and bulk-inserted
(COPY on PostgreSQL)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import insert, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from app.models import (
    FIRST_CUSTOM_ID,
    Aggregate,
    Allocation,
    Base,
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
from app.placement_import.progress import Progress
from app.placement_import.source import Snapshot, SourceError
from app.services.standard import is_custom


class Owners:
    """Who owns imported providers: none (shared), or a mapping file's rule: a JSON object of
    provider uuid -> project id; a provider not named takes its tree root's owner."""

    def __init__(self, mapping: dict[str, str] | None = None) -> None:
        self.mapping = mapping or {}

    @classmethod
    def from_file(cls, path: Path) -> Owners:
        try:
            mapping = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise SourceError(f"the owners file cannot be read as JSON: {exc}") from None
        if not isinstance(mapping, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in mapping.items()
        ):
            raise SourceError(
                'the owners file must be a JSON object {"<provider uuid>": "<project id>"}'
            )
        return cls(mapping)

    def of(self, uuid: str, root_uuid: str | None) -> str | None:
        return self.mapping.get(uuid) or (self.mapping.get(root_uuid) if root_uuid else None)


class TableCopier:
    def __init__(
        self,
        source: Snapshot,
        target: AsyncConnection,
        problems: checks.Problems,
        progress: Progress,
        totals: dict[str, int],
        owners: Owners,
    ) -> None:
        self.source, self.target, self.problems = source, target, problems
        self.progress, self.totals, self.owners = progress, totals, owners
        self.class_names: dict[int, str] = {}
        self.trait_ids: dict[int, int] = {}  # Placement's id -> allot's
        self.consumer_ids: dict[str, int] = {}  # uuid -> id
        self.provider_ids: set[int] = set()
        self._links: list[tuple[int, str, int | None, int | None]] = []  # id, uuid, root, parent

    async def copy_all(self) -> dict[str, int]:
        """Every table, in dependency order; how many rows of each were copied."""
        copied_by_table: dict[str, int] = {}
        steps: list[tuple[str, Callable[[list[dict[str, Any]]], Any]]] = [
            ("resource_classes", self._resource_classes),
            ("traits", self._traits),
            ("resource_providers", self._providers),
            ("inventories", self._inventories),
            ("placement_aggregates", self._aggregates),
            ("resource_provider_aggregates", self._provider_aggregates),
            ("resource_provider_traits", self._provider_traits),
            ("projects", self._projects),
            ("users", self._users),
            ("consumer_types", self._consumer_types),
            ("consumers", self._consumers),
            ("allocations", self._allocations),
        ]
        known = await self.target.execute(select(ResourceClass.id, ResourceClass.name))
        self.class_names = {id_: name for id_, name in known.all()}
        for table, step in steps:
            copied = 0
            self.progress.start(table, self.totals[table])
            async for batch in self.source.rows(table):
                await step(batch)
                copied += len(batch)
                self.progress.advance(table, copied)
            self.progress.finish(table, copied)
            copied_by_table[table] = copied
        await self._link_providers()
        return copied_by_table

    async def _bulk(self, model: type[Base], rows: list[dict[str, Any]]) -> None:
        if not rows or self.problems.rows:
            return  # once refused, nothing more is written (the transaction is rolled back)
        if self.target.dialect.name == "postgresql":
            columns = list(rows[0])
            raw = await self.target.get_raw_connection()
            await raw.driver_connection.copy_records_to_table(  # type: ignore[union-attr]
                model.__tablename__,
                records=[tuple(r[c] for c in columns) for r in rows],
                columns=columns,
            )
        else:
            await self.target.execute(insert(model), rows)

    async def _resource_classes(self, batch: list[dict[str, Any]]) -> None:
        # Standard classes have the same ids in both (their index in os-resource-classes);
        # custom ones are copied with their ids.
        out = []
        for row in batch:
            checks.check_name(self.problems, "resource_classes", row)
            if row["id"] < FIRST_CUSTOM_ID:
                if self.class_names.get(row["id"]) != row["name"]:
                    self.problems.add(
                        "resource_classes", row["name"], f"allot's standard class {row['id']} is "
                        f"{self.class_names.get(row['id'])!r}"
                    )  # fmt: skip
                continue
            if not is_custom(row["name"]):
                self.problems.add("resource_classes", row["name"], "a custom class without CUSTOM_")
            self.class_names[row["id"]] = row["name"]
            out.append({"id": row["id"], "name": row["name"], "created_at": checks.utc(None)})
        await self._bulk(ResourceClass, out)

    async def _traits(self, batch: list[dict[str, Any]]) -> None:
        for row in batch:
            checks.check_name(self.problems, "traits", row)
        names = [r["name"] for r in batch]
        found = await self.target.execute(select(Trait.name, Trait.id).where(Trait.name.in_(names)))
        known = {name: id_ for name, id_ in found.all()}
        new = [r for r in batch if r["name"] not in known]
        await self._bulk(
            Trait,
            [{"name": r["name"], "created_at": checks.utc(None)} for r in new],
        )
        if new:
            added = await self.target.execute(
                select(Trait.name, Trait.id).where(Trait.name.in_([r["name"] for r in new]))
            )
            known.update({name: id_ for name, id_ in added.all()})
        for row in batch:
            if row["name"] in known:
                self.trait_ids[row["id"]] = known[row["name"]]

    async def _providers(self, batch: list[dict[str, Any]]) -> None:
        out = []
        for row in batch:
            checks.check_provider(self.problems, row)
            self.provider_ids.add(row["id"])
            self._links.append(
                (row["id"], row["uuid"], row["root_provider_id"], row["parent_provider_id"])
            )
            out.append(
                {
                    "id": row["id"],
                    "uuid": row["uuid"],
                    "name": row["name"],
                    "generation": row["generation"] or 0,
                    "created_at": checks.utc(row["created_at"]),
                    "updated_at": checks.utc(row["updated_at"]) if row["updated_at"] else None,
                }
            )
        await self._bulk(ResourceProvider, out)

    async def _link_providers(self) -> None:
        """Parents and roots, once every provider exists (a re-parented provider's parent may
        have a higher id than itself); then owners, by the operator's rule."""
        links = self._links
        uuid_of = {rp: uuid for rp, uuid, _, _ in links}
        params = []
        for rp, uuid, root, parent in links:
            for column, value in (("root", root), ("parent", parent)):
                if value is not None and value not in uuid_of:
                    self.problems.add("resource_providers", uuid, f"its {column} does not exist")
            params.append(
                {
                    "rp": rp,
                    "root": root,
                    "parent": parent,
                    "owner": self.owners.of(uuid, uuid_of.get(root) if root else None),
                }
            )
        if params and not self.problems.rows:
            await self.target.execute(
                text(
                    "UPDATE resource_providers SET root_provider_id = :root, "
                    "parent_provider_id = :parent, owner_project_id = :owner WHERE id = :rp"
                ),
                params,
            )

    async def _inventories(self, batch: list[dict[str, Any]]) -> None:
        for row in batch:
            checks.check_inventory(self.problems, row)
            self._known_class(row["resource_class_id"], "inventories", row["id"])
            row["created_at"] = checks.utc(None)
        await self._bulk(Inventory, batch)

    def _known_class(self, class_id: int, table: str, key: Any) -> None:
        if class_id not in self.class_names:
            self.problems.add(table, key, f"resource class {class_id} is unknown to allot")

    async def _aggregates(self, batch: list[dict[str, Any]]) -> None:
        for row in batch:
            if why := checks.uuid_problem(row["uuid"]):
                self.problems.add("placement_aggregates", row["uuid"], why)
        await self._bulk(Aggregate, batch)

    async def _provider_aggregates(self, batch: list[dict[str, Any]]) -> None:
        await self._bulk(ProviderAggregate, batch)

    async def _provider_traits(self, batch: list[dict[str, Any]]) -> None:
        out = [
            {
                "resource_provider_id": r["resource_provider_id"],
                "trait_id": self.trait_ids[r["trait_id"]],
            }
            for r in batch
            if r["trait_id"] in self.trait_ids
        ]
        await self._bulk(ProviderTrait, out)

    async def _projects(self, batch: list[dict[str, Any]]) -> None:
        await self._identities(Project, "projects", batch)

    async def _users(self, batch: list[dict[str, Any]]) -> None:
        await self._identities(User, "users", batch)

    async def _identities(self, model: type[Base], name: str, batch: list[dict[str, Any]]) -> None:
        for row in batch:
            checks.check_external_id(self.problems, name, row)
            row["created_at"] = checks.utc(None)
        await self._bulk(model, batch)

    async def _consumer_types(self, batch: list[dict[str, Any]]) -> None:
        for row in batch:
            checks.check_name(self.problems, "consumer_types", row)
            row["created_at"] = checks.utc(None)
        await self._bulk(ConsumerType, batch)

    async def _consumers(self, batch: list[dict[str, Any]]) -> None:
        for row in batch:
            checks.check_consumer(self.problems, row)
            self.consumer_ids[row["uuid"]] = row["id"]
            row["created_at"] = checks.utc(row["created_at"])
            row["updated_at"] = checks.utc(row["updated_at"]) if row["updated_at"] else None
        await self._bulk(Consumer, batch)

    async def _allocations(self, batch: list[dict[str, Any]]) -> None:
        out = []
        for row in batch:
            consumer = self.consumer_ids.get(row["consumer_id"])
            if consumer is None:
                self.problems.add("allocations", row["id"], "its consumer does not exist")
                continue
            if row["used"] <= 0:
                self.problems.add("allocations", row["id"], "an amount not above 0")
            self._known_class(row["resource_class_id"], "allocations", row["id"])
            out.append(
                {
                    "id": row["id"],
                    "consumer_id": consumer,
                    "resource_provider_id": row["resource_provider_id"],
                    "resource_class_id": row["resource_class_id"],
                    "used": row["used"],
                    "created_at": checks.utc(None),
                }
            )
        await self._bulk(Allocation, out)
