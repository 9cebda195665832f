"""Placement's rows as allot's: what can be represented, and what cannot (listed, never fixed).

Placement stores what allot stores under the same table names; the differences are that
allot's allocations name their consumer by id (Placement's by uuid), its traits have their own
ids, and its columns carry bounds Placement never checked (name lengths, uuid form, no NUL).
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from app.models.base import EXTERNAL_ID_LEN, NAME_LEN

_NAME_RE = re.compile(r"^[A-Z0-9_]+$")
# Placement's identity for consumers written before 1.8 (no project or user given).
INCOMPLETE_CONSUMER_ID = "00000000-0000-0000-0000-000000000000"


@dataclass
class Problems:
    """Source rows allot cannot hold: any one stops the import before anything is written."""

    rows: list[str] = field(default_factory=list)

    def add(self, table: str, key: Any, why: str) -> None:
        if len(self.rows) < 1000:
            self.rows.append(f"{table} {key!r}: {why}")
        elif len(self.rows) == 1000:
            self.rows.append("(and more; the first 1,000 are listed)")


def utc(value: datetime | None) -> datetime:
    """Placement stores naive UTC times; allot's columns carry the zone."""
    if value is None:
        return datetime.now(UTC)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def text_problem(value: Any, limit: int) -> str | None:
    if not isinstance(value, str):
        return "missing"
    if "\x00" in value:
        return "contains a NUL character"
    if len(value) > limit:
        return f"longer than {limit} characters"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "not valid Unicode"
    return None


def uuid_problem(value: Any) -> str | None:
    try:
        uuid.UUID(str(value))
    except ValueError:
        return "not a UUID"
    return None if len(str(value)) == 36 else "not a UUID in its canonical form"


def check_name(problems: Problems, table: str, row: dict[str, Any], limit: int = 255) -> None:
    why = text_problem(row["name"], limit)
    if why is None and not _NAME_RE.match(row["name"]):
        why = "not an upper-case name"
    if why:
        problems.add(table, row.get("name"), why)


def check_provider(problems: Problems, row: dict[str, Any]) -> None:
    why = uuid_problem(row["uuid"]) or text_problem(row["name"], NAME_LEN)
    if why is None and (row["generation"] or 0) < 0:
        why = "negative generation"
    if why:
        problems.add("resource_providers", row["uuid"], why)


def check_inventory(problems: Problems, row: dict[str, Any]) -> None:
    for column in ("total", "reserved", "min_unit", "max_unit", "step_size"):
        if row[column] < 0:
            problems.add("inventories", row["id"], f"negative {column}")
    if not row["allocation_ratio"] > 0:
        problems.add("inventories", row["id"], "allocation_ratio not above 0")


def check_external_id(problems: Problems, table: str, row: dict[str, Any]) -> None:
    why = text_problem(row["external_id"], EXTERNAL_ID_LEN)
    if why:
        problems.add(table, row["id"], why)


def check_consumer(problems: Problems, row: dict[str, Any]) -> None:
    why = uuid_problem(row["uuid"])
    if why is None and row["generation"] < 0:
        why = "negative generation"
    if why:
        problems.add("consumers", row["uuid"], why)
