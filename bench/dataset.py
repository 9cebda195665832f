"""Load a synthetic cloud straight into a PostgreSQL database, allot's or Placement's.

The two schemas share table and column names for everything loaded here (providers,
inventories, traits, aggregates), so one loader fills either; columns only one of them has
(timestamps, owner_project_id) are detected and filled or left to their defaults. Rows go in
with COPY, so 100,000 providers take seconds.

Layout for N providers (deterministic; uuids are uuid5 of names):
- compute roots `cn<i>`, each with two NUMA children (VCPU 32 at ratio 4.0, MEMORY_MB 131072
  with 512 reserved, HW_NUMA_ROOT); roots carry HW_CPU_X86_AVX2 (1 in 2), HW_CPU_X86_AVX512F
  (1 in 4), COMPUTE_STATUS_DISABLED (1 in 20);
- racks of 40 computes, one aggregate each (`rack<r>`); odd racks have local DISK_GB 2000 on
  the roots, even racks a sharing provider `shared<r>` (DISK_GB 100000,
  MISC_SHARES_VIA_AGGREGATE) in the rack's aggregate.

- with `--consumers C`: C instances in 1,000 projects (5 users each), round-robin over the
  computes: VCPU 1 and MEMORY_MB 1024 on a NUMA child, DISK_GB 10 on the rack's sharing
  provider or the compute's own disk; three allocation rows each. Consumers are keyed by uuid
  in Placement's allocations and by id in allot's: the loader looks at the schema.

Usage:
    .venv/bin/python bench/dataset.py --dsn postgresql://postgres@127.0.0.1:5432/DB --providers 1000

Start the service on the database first (it creates the standard traits), then load.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import math
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import asyncpg

NS = uuid.UUID("6f1d5a5e-2f58-4f0e-9d0a-7c1b2e3d4f50")
RACK_SIZE = 40
VCPU, MEMORY_MB, DISK_GB = 0, 1, 2  # os-resource-classes indexes: the ids in both schemas
TRAITS = [
    "HW_NUMA_ROOT",
    "HW_CPU_X86_AVX2",
    "HW_CPU_X86_AVX512F",
    "COMPUTE_STATUS_DISABLED",
    "MISC_SHARES_VIA_AGGREGATE",
]
DATA_TABLES = [
    "allocations",
    "consumers",
    "consumer_types",
    "projects",
    "users",
    "resource_provider_traits",
    "resource_provider_aggregates",
    "placement_aggregates",
    "inventories",
    "resource_providers",
]


def uuid_of(name: str) -> str:
    return str(uuid.uuid5(NS, name))


def rack_aggregate(rack: int) -> str:
    return uuid_of(f"rack{rack}")


def layout_sizes(providers: int) -> tuple[int, int]:
    """(computes, racks) so that computes * 3 + sharing providers is about `providers`."""
    computes = max(1, (providers * 240) // (240 * 3 + 3))
    racks = math.ceil(computes / RACK_SIZE)
    return computes, racks


PROJECTS, USERS_PER_PROJECT = 1000, 5


@dataclass
class Rows:
    providers: list[tuple[Any, ...]] = field(default_factory=list)
    inventories: list[tuple[Any, ...]] = field(default_factory=list)
    traits: list[tuple[int, str]] = field(default_factory=list)
    aggregates: list[tuple[int, int]] = field(default_factory=list)
    # Per compute: (root id, its NUMA children's ids, where its instances' disk comes from).
    computes: list[tuple[int, tuple[int, int], int]] = field(default_factory=list)


def build(providers: int) -> tuple[Rows, int]:
    computes, racks = layout_sizes(providers)
    rows = Rows()
    next_id = 1

    def add(name: str, parent: int | None, root: int | None) -> int:
        nonlocal next_id
        pid = next_id
        next_id += 1
        rows.providers.append((pid, uuid_of(name), name, parent, root or pid))
        return pid

    def inventory(pid: int, rc: int, total: int, reserved: int = 0, ratio: float = 1.0) -> None:
        rows.inventories.append((pid, rc, total, reserved, 1, total, 1, ratio))

    shared = 0
    for i in range(computes):
        rack = i // RACK_SIZE
        if rack % 2 == 0 and i % RACK_SIZE == 0:
            # A rack's shared storage arrives with the rack (ids interleave as in a real cloud).
            shared = add(f"shared{rack}", None, None)
            inventory(shared, DISK_GB, 100_000)
            rows.traits.append((shared, "MISC_SHARES_VIA_AGGREGATE"))
            rows.aggregates.append((shared, rack))
        root = add(f"cn{i}", None, None)
        rows.aggregates.append((root, rack))
        if rack % 2 == 1:
            inventory(root, DISK_GB, 2000)
        if i % 2 == 0:
            rows.traits.append((root, "HW_CPU_X86_AVX2"))
        if i % 4 == 0:
            rows.traits.append((root, "HW_CPU_X86_AVX512F"))
        if i % 20 == 7:
            rows.traits.append((root, "COMPUTE_STATUS_DISABLED"))
        numas = []
        for n in range(2):
            numa = add(f"cn{i}_numa{n}", root, root)
            inventory(numa, VCPU, 32, ratio=4.0)
            inventory(numa, MEMORY_MB, 131_072, reserved=512)
            rows.traits.append((numa, "HW_NUMA_ROOT"))
            numas.append(numa)
        rows.computes.append((root, (numas[0], numas[1]), shared if rack % 2 == 0 else root))
    return rows, racks


def consumer_rows(
    rows: Rows, consumers: int
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """(consumers, allocations) rows: (id, uuid, project id, user id) and
    (consumer id, provider id, class id, used)."""
    made, allocations = [], []
    for c in range(consumers):
        _, numas, disk = rows.computes[c % len(rows.computes)]
        project = c % PROJECTS + 1
        user = (project - 1) * USERS_PER_PROJECT + c % USERS_PER_PROJECT + 1
        made.append((c + 1, uuid_of(f"instance{c}"), project, user))
        numa = numas[(c // len(rows.computes)) % 2]
        allocations += [(c + 1, numa, VCPU, 1), (c + 1, numa, MEMORY_MB, 1024),
                        (c + 1, disk, DISK_GB, 10)]  # fmt: skip
    return made, allocations


async def columns(conn: asyncpg.Connection, table: str) -> dict[str, str]:
    """Column name -> data type, for the tables of the current schema."""
    rows = await conn.fetch(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_name = $1 AND table_schema = current_schema()",
        table,
    )
    return {r["column_name"]: r["data_type"] for r in rows}


async def copy(
    conn: asyncpg.Connection, table: str, names: list[str], records: list[tuple[Any, ...]]
) -> None:
    present = await columns(conn, table)
    extra = [c for c in ("created_at", "updated_at") if c in present]
    stamps = tuple(
        dt.datetime.now(dt.UTC) if "with time zone" in present[c] else dt.datetime.utcnow()
        for c in extra
    )
    await conn.copy_records_to_table(
        table, columns=names + extra, records=[tuple(r) + stamps for r in records]
    )


async def advance_sequences(conn: asyncpg.Connection, tables: tuple[str, ...]) -> None:
    """Rows were copied with their ids: each table's sequence moves past them."""
    for table in tables:
        await conn.execute(
            f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
            f"(SELECT COALESCE(MAX(id), 1) FROM {table}))"
        )


async def load_consumers(conn: asyncpg.Connection, rows: Rows, consumers: int) -> int:
    made, allocations = consumer_rows(rows, consumers)
    await copy(
        conn,
        "projects",
        ["id", "external_id"],
        [(p, uuid_of(f"project{p}").replace("-", "")) for p in range(1, PROJECTS + 1)],
    )
    users = PROJECTS * USERS_PER_PROJECT
    await copy(
        conn,
        "users",
        ["id", "external_id"],
        [(u, uuid_of(f"user{u}").replace("-", "")) for u in range(1, users + 1)],
    )
    await copy(conn, "consumer_types", ["id", "name"], [(1, "INSTANCE")])
    await copy(conn, "consumers",
               ["id", "uuid", "project_id", "user_id", "generation", "consumer_type_id"],
               [(c, u, p, us, 1, 1) for c, u, p, us in made])  # fmt: skip
    by_uuid = (await columns(conn, "allocations"))["consumer_id"] != "integer"
    uuids = {c: u for c, u, _, _ in made}
    await copy(
        conn,
        "allocations",
        ["consumer_id", "resource_provider_id", "resource_class_id", "used"],
        [(uuids[c] if by_uuid else c, rp, rc, used) for c, rp, rc, used in allocations],
    )
    await advance_sequences(
        conn, ("projects", "users", "consumer_types", "consumers", "allocations")
    )
    return len(allocations)


async def load(dsn: str, providers: int, consumers: int = 0) -> dict[str, Any]:
    rows, racks = build(providers)
    conn = await asyncpg.connect(dsn)
    try:
        trait_ids = {
            r["name"]: r["id"]
            for r in await conn.fetch("SELECT id, name FROM traits WHERE name = ANY($1)", TRAITS)
        }
        missing = set(TRAITS) - set(trait_ids)
        if missing:
            raise SystemExit(f"traits {sorted(missing)} missing: start the service first")
        async with conn.transaction():
            present = [t for t in DATA_TABLES if await columns(conn, t)]
            await conn.execute(f"TRUNCATE {', '.join(present)} CASCADE")
            await copy(
                conn,
                "resource_providers",
                ["id", "uuid", "name", "generation", "parent_provider_id", "root_provider_id"],
                [(pid, u, n, 0, parent, root) for pid, u, n, parent, root in rows.providers],
            )
            await copy(
                conn,
                "inventories",
                [
                    "resource_provider_id",
                    "resource_class_id",
                    "total",
                    "reserved",
                    "min_unit",
                    "max_unit",
                    "step_size",
                    "allocation_ratio",
                ],
                rows.inventories,
            )
            await copy(
                conn,
                "resource_provider_traits",
                ["resource_provider_id", "trait_id"],
                [(pid, trait_ids[name]) for pid, name in rows.traits],
            )
            await copy(
                conn,
                "placement_aggregates",
                ["id", "uuid"],
                [(r + 1, rack_aggregate(r)) for r in range(racks)],
            )
            await copy(
                conn,
                "resource_provider_aggregates",
                ["resource_provider_id", "aggregate_id"],
                [(pid, rack + 1) for pid, rack in rows.aggregates],
            )
            await advance_sequences(
                conn, ("resource_providers", "inventories", "placement_aggregates")
            )
            allocations = await load_consumers(conn, rows, consumers) if consumers else 0
        await conn.execute("ANALYZE")
    finally:
        await conn.close()
    return {
        "providers": len(rows.providers),
        "racks": racks,
        "consumers": consumers,
        "allocations": allocations,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dsn", required=True, help="postgresql://user@host:port/database")
    parser.add_argument("--providers", type=int, default=1000)
    parser.add_argument("--consumers", type=int, default=0)
    args = parser.parse_args()
    started = time.perf_counter()
    info = asyncio.run(load(args.dsn, args.providers, args.consumers))
    print(
        f"loaded {info} into {args.dsn.rsplit('/', 1)[-1]} in {time.perf_counter() - started:.1f}s"
    )


if __name__ == "__main__":
    main()
