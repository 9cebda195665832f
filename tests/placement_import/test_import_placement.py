"""Moving from Placement: a real Placement 16.0.0 (on PostgreSQL and on MariaDB), filled through
its API, imported with `allot db import-placement`, checked with `allot db verify-import`, and
then every read answered alike by both; a client holding Placement's generations writes on.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import BACKENDS, PG_URL, TEST_SECRET, mint
from tests.deployment.cloud import allot_environment
from tests.deployment.topology import ALLOT, Process, free_port, own_database
from tests.placement_server import create_database, drop_database, placement, sync_schema

pytestmark = pytest.mark.slow

LATEST = {"openstack-api-version": "placement 1.39"}
SOURCES = ["postgresql", "mariadb"]


class Api:
    def __init__(self, url: str, headers: dict[str, str]) -> None:
        self.client = httpx.Client(base_url=url, headers={**LATEST, **headers}, timeout=30)

    def __call__(self, method: str, path: str, body: Any = None, **headers: str) -> Any:
        response = self.client.request(method, path, json=body, headers=headers)
        assert response.status_code < 300, (
            f"{method} {path}: {response.status_code} {response.text}"
        )
        return response.json() if response.content else None


def fill(api: Api) -> dict[str, Any]:
    """Every kind of object, written as clients write them; what was made, by role."""
    made: dict[str, Any] = {}
    api("PUT", "/resource_classes/CUSTOM_FPGA")
    api("PUT", "/traits/CUSTOM_FAST_NIC")
    node = api("POST", "/resource_providers", {"name": "cn1"})["uuid"]
    numa0 = api("POST", "/resource_providers", {"name": "cn1-numa0", "parent_provider_uuid": node})
    numa1 = api("POST", "/resource_providers", {"name": "cn1-numa1", "parent_provider_uuid": node})
    other = api("POST", "/resource_providers", {"name": "cn2"})["uuid"]
    # Re-parented (1.37): numa1 moves from cn1 to cn2.
    api("PUT", f"/resource_providers/{numa1['uuid']}",
        {"name": "cn2-numa0", "parent_provider_uuid": other})  # fmt: skip
    pool = api("POST", "/resource_providers", {"name": "shared-disk"})["uuid"]
    gone = api("POST", "/resource_providers", {"name": "decommissioned"})["uuid"]
    api("DELETE", f"/resource_providers/{gone}")
    aggregate = str(uuid.uuid4())
    inventories = {
        numa0["uuid"]: {"VCPU": {"total": 8}, "MEMORY_MB": {"total": 4096, "reserved": 512}},
        numa1["uuid"]: {"VCPU": {"total": 8, "allocation_ratio": 4.0}},
        node: {"CUSTOM_FPGA": {"total": 2, "max_unit": 1}},
        pool: {"DISK_GB": {"total": 1000, "step_size": 10, "min_unit": 10}},
        other: {"VCPU": {"total": 4}},
    }
    for rp, inventory in inventories.items():
        generation = api("GET", f"/resource_providers/{rp}")["generation"]
        api("PUT", f"/resource_providers/{rp}/inventories",
            {"resource_provider_generation": generation, "inventories": inventory})  # fmt: skip
    for rp, traits in ((numa0["uuid"], ["HW_CPU_X86_AVX2", "CUSTOM_FAST_NIC"]),
                       (pool, ["MISC_SHARES_VIA_AGGREGATE"])):  # fmt: skip
        generation = api("GET", f"/resource_providers/{rp}")["generation"]
        api("PUT", f"/resource_providers/{rp}/traits",
            {"resource_provider_generation": generation, "traits": traits})  # fmt: skip
    for rp in (node, pool):
        generation = api("GET", f"/resource_providers/{rp}")["generation"]
        api("PUT", f"/resource_providers/{rp}/aggregates",
            {"resource_provider_generation": generation, "aggregates": [aggregate]})  # fmt: skip

    def claim(consumer: str, allocations: dict[str, dict[str, int]], generation: Any) -> None:
        api("PUT", f"/allocations/{consumer}", {
            "allocations": {rp: {"resources": r} for rp, r in allocations.items()},
            "project_id": "project-a", "user_id": "user-a", "consumer_generation": generation,
            "consumer_type": "INSTANCE",
        })  # fmt: skip

    instance = str(uuid.uuid4())  # spans three providers, written three times
    claim(instance, {numa0["uuid"]: {"VCPU": 2}, pool: {"DISK_GB": 20}}, None)
    claim(instance, {numa0["uuid"]: {"VCPU": 4}, pool: {"DISK_GB": 20}}, 1)
    claim(instance, {numa0["uuid"]: {"VCPU": 4, "MEMORY_MB": 1024}, pool: {"DISK_GB": 20},
                     node: {"CUSTOM_FPGA": 1}}, 2)  # fmt: skip
    migration = str(uuid.uuid4())
    api("PUT", f"/allocations/{migration}", {
        "allocations": {numa1["uuid"]: {"resources": {"VCPU": 3}}}, "project_id": "project-b",
        "user_id": "user-b", "consumer_generation": None, "consumer_type": "MIGRATION",
    })  # fmt: skip
    deleted = str(uuid.uuid4())
    claim(deleted, {other: {"VCPU": 1}}, None)
    api("DELETE", f"/allocations/{deleted}")
    old = str(uuid.uuid4())  # before 1.8: no project or user
    api("PUT", f"/allocations/{old}",
        {"allocations": [{"resource_provider": {"uuid": other}, "resources": {"VCPU": 3}}]},
        **{"openstack-api-version": "placement 1.7"})  # fmt: skip
    # Placement lets an inventory shrink below what is allocated (allot would refuse).
    generation = api("GET", f"/resource_providers/{other}")["generation"]
    shrunk = {"resource_provider_generation": generation, "inventories": {"VCPU": {"total": 2}}}
    api("PUT", f"/resource_providers/{other}/inventories", shrunk)
    made.update(
        providers=[node, numa0["uuid"], numa1["uuid"], other, pool],
        consumers=[instance, migration, old],
        over_capacity=other,
        incomplete=old,
    )
    return made


@pytest.fixture(scope="module", params=SOURCES)
def source(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    """A filled Placement, serving, and its database URL."""
    kind = request.param
    name = f"placement_import_{kind}_{os.getpid()}"
    database = create_database(kind, name)
    try:
        with placement(database, tmp_path_factory.mktemp(f"placement-{kind}")) as url:
            made = fill(Api(url, {"x-auth-token": "admin"}))
            yield {"kind": kind, "url": url, "database": database, "made": made}
    finally:
        drop_database(kind, name)


@pytest.fixture(params=BACKENDS)
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, str]]:
    """The environment of an `allot` command on a new, migrated, empty database."""
    env = allot_environment(auth_jwt_secret=TEST_SECRET, rate_limit="off")
    if request.param == "sqlite":
        env["ALLOT_DATABASE_URL"] = f"sqlite+aiosqlite:///{tmp_path / 'allot.db'}"
        run(env, "db", "upgrade")
        yield env
        return
    assert PG_URL
    with own_database(PG_URL, f"import{free_port()}") as url:
        env["ALLOT_DATABASE_URL"] = url
        run(env, "db", "upgrade")
        yield env


def run(env: dict[str, str], *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [ALLOT, *args], env=env, capture_output=True, text=True, timeout=600, cwd=env.get("HOME")
    )
    if check:
        assert done.returncode == 0, f"allot {' '.join(args)}: {done.stdout}\n{done.stderr}"
    return done


def canonical(body: Any) -> Any:
    """Lists compared as sets: the two servers need not order rows alike."""
    if isinstance(body, dict):
        return {k: canonical(v) for k, v in body.items()}
    if isinstance(body, list):
        return sorted((canonical(v) for v in body), key=lambda v: json.dumps(v, sort_keys=True))
    return body


def reads(made: dict[str, Any]) -> list[str]:
    paths = ["/resource_providers", "/resource_classes/CUSTOM_FPGA", "/usages?project_id=project-a",
             "/usages?project_id=project-b", "/traits?name=startswith:CUSTOM_"]  # fmt: skip

    for rp in made["providers"]:
        paths += [f"/resource_providers/{rp}"] + [
            f"/resource_providers/{rp}/{part}"
            for part in ("inventories", "traits", "aggregates", "usages", "allocations")
        ]
    paths += [f"/allocations/{consumer}" for consumer in made["consumers"]]
    paths += [f"/resource_providers?in_tree={made['providers'][0]}"]
    return paths


def test_an_imported_allot_answers_every_read_as_placement_did_and_takes_writes_on(
    source: dict[str, Any], target: dict[str, str], tmp_path: Path
) -> None:
    imported = run(target, "db", "import-placement", source["database"])
    report = imported.stdout
    # Not a terminal: a plain progress line per table on standard error.
    assert "resource_providers: 5 rows in" in imported.stderr
    assert "copied 5 resource_providers" in report
    assert (
        f"1 providers using more than their capacity:\n  {source['made']['over_capacity']}"
        in report
    )
    incomplete = source["made"]["incomplete"]
    assert f"1 consumers without project or user (written before 1.8):\n  {incomplete}" in report
    assert run(target, "db", "verify-import", source["database"]).stdout.strip() == (
        "allot holds what Placement holds"
    )
    run(target, "db", "check")  # the usage counts allot keeps were computed on the way in

    server = Process("imported", free_port(), target, tmp_path / "serve.log", workers=1)
    server.start()
    try:
        ours = Api(server.url, {"x-auth-token": mint(roles=["admin"], project="admin")})
        theirs = Api(source["url"], {"x-auth-token": "admin"})
        for path in reads(source["made"]):
            # Placement answers /usages at 1.38 and later with a 500 on PostgreSQL (its bug,
            # in the tool's README): compared at 1.37.
            version = {"openstack-api-version": "placement 1.37"} if "/usages?" in path else {}
            mine, placements = ours("GET", path, **version), theirs("GET", path, **version)
            assert canonical(mine) == canonical(placements), path

        # Nova's cached generations, read from Placement, are still current in allot.
        rp = source["made"]["providers"][1]
        generation = theirs("GET", f"/resource_providers/{rp}")["generation"]
        traits = {"resource_provider_generation": generation, "traits": ["HW_CPU_X86_AVX2"]}
        ours("PUT", f"/resource_providers/{rp}/traits", traits)
        consumer = source["made"]["consumers"][0]
        held = theirs("GET", f"/allocations/{consumer}")
        ours("PUT", f"/allocations/{consumer}", {
            "allocations": {rp: {"resources": {"VCPU": 1}}}, "project_id": "project-a",
            "user_id": "user-a", "consumer_generation": held["consumer_generation"],
            "consumer_type": "INSTANCE",
        })  # fmt: skip
        # And new objects get ids of their own (the copied ids are behind every sequence).
        ours("POST", "/resource_providers", {"name": "after-the-move"})
    finally:
        server.stop()


def target_rows(env: dict[str, str]) -> dict[str, int]:
    """How many providers, consumers and allocations the target holds."""
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    async def count() -> dict[str, int]:
        engine = create_async_engine(env["ALLOT_DATABASE_URL"])
        async with engine.connect() as conn:
            counts = {
                table: int((await conn.execute(text(f"SELECT count(*) FROM {table}"))).scalar_one())  # noqa: S608
                for table in ("resource_providers", "consumers", "allocations")
            }
        await engine.dispose()
        return counts

    return asyncio.run(count())


EMPTY = {"resource_providers": 0, "consumers": 0, "allocations": 0}


@pytest.fixture
def scratch_source(tmp_path: Path) -> Iterator[str]:
    """An empty Placement 16.0.0 schema on PostgreSQL, for rows written straight into it."""
    name = f"placement_scratch_{os.getpid()}_{free_port()}"
    database = create_database("postgresql", name)
    sync_schema(database, tmp_path)
    try:
        yield database
    finally:
        drop_database("postgresql", name)


def sql(database: str, *statements: str) -> None:
    name = database.rsplit("/", 1)[1]
    for statement in statements:
        subprocess.run(
            ["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", name, "-qc", statement], check=True
        )


def refused(env: dict[str, str], source_url: str, *extra: str) -> str:
    done = run(env, "db", "import-placement", source_url, *extra, check=False)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    return done.stderr


def test_an_unreachable_source_is_one_line_and_nothing_is_written(target: dict[str, str]) -> None:
    error = refused(target, f"postgresql://postgres@127.0.0.1:{free_port()}/placement")
    assert error.startswith("allot: cannot connect to the source") and error.count("\n") == 1
    assert target_rows(target) == EMPTY


def test_wrong_credentials_are_one_line(target: dict[str, str]) -> None:
    error = refused(target, "mysql+pymysql://root:wrong-password@127.0.0.1:3306/mysql")
    assert error.startswith("allot: cannot connect to the source") and "1045" in error
    assert target_rows(target) == EMPTY


def test_a_database_that_is_not_placements_is_refused(target: dict[str, str]) -> None:
    error = refused(target, "postgresql://postgres@127.0.0.1:5432/postgres")
    assert error == "allot: the source is not a Placement database (no alembic_version table)\n"


def test_an_unknown_schema_revision_is_named(target: dict[str, str], scratch_source: str) -> None:
    sql(scratch_source, "UPDATE alembic_version SET version_num = 'f00dfeed1234'")
    error = refused(target, scratch_source)
    assert "revision is f00dfeed1234" in error and "a082b8bb98d0" in error
    assert target_rows(target) == EMPTY


def test_a_target_that_holds_data_is_refused_unless_replaced(
    target: dict[str, str], scratch_source: str
) -> None:
    sql(
        scratch_source,
        "INSERT INTO resource_providers (id, uuid, name, generation, root_provider_id) "
        "VALUES (1, 'a9b1f0c8-0a5e-4a33-9d3e-5b7a1e0c2f11', 'cn1', 4, 1)",
    )
    run(target, "db", "import-placement", scratch_source)
    error = refused(target, scratch_source)
    assert "the target database is not empty (resource_providers)" in error
    run(target, "db", "import-placement", scratch_source, "--replace")
    assert target_rows(target)["resource_providers"] == 1


def test_rows_allot_cannot_hold_are_listed_and_nothing_is_written(
    target: dict[str, str], scratch_source: str
) -> None:
    sql(
        scratch_source,
        "INSERT INTO resource_providers (id, uuid, name, generation, root_provider_id) "
        "VALUES (1, 'not-a-uuid', 'cn1', 0, 1), "
        "(2, 'b9b1f0c8-0a5e-4a33-9d3e-5b7a1e0c2f12', 'cn2', 0, 2)",
        "INSERT INTO projects (id, external_id) VALUES (2, 'p1')",
        "INSERT INTO users (id, external_id) VALUES (1, 'u')",
        "INSERT INTO consumers (id, uuid, project_id, user_id, generation) "
        "VALUES (1, 'c9b1f0c8-0a5e-4a33-9d3e-5b7a1e0c2f13', 2, 1, 0)",
        "INSERT INTO allocations (id, resource_provider_id, consumer_id, resource_class_id, used) "
        "VALUES (1, 2, 'c9b1f0c8-0a5e-4a33-9d3e-5b7a1e0c2f13', 0, 0)",
    )
    error = refused(target, scratch_source)
    assert "nothing was written" in error
    assert "resource_providers 'not-a-uuid': not a UUID" in error
    assert "allocations 1: an amount not above 0" in error
    assert target_rows(target) == EMPTY


def test_an_owners_file_gives_providers_and_their_trees_an_owner(
    target: dict[str, str], scratch_source: str, tmp_path: Path
) -> None:
    root = "11111111-0a5e-4a33-9d3e-5b7a1e0c2f11"
    child = "22222222-0a5e-4a33-9d3e-5b7a1e0c2f11"
    alone = "33333333-0a5e-4a33-9d3e-5b7a1e0c2f11"
    sql(
        scratch_source,
        "INSERT INTO resource_providers (id, uuid, name, generation, root_provider_id, "
        "parent_provider_id) VALUES (1, '11111111-0a5e-4a33-9d3e-5b7a1e0c2f11', 'cn1', 0, 1, "
        "NULL), (2, '22222222-0a5e-4a33-9d3e-5b7a1e0c2f11', 'cn1-numa0', 0, 1, 1), "
        "(3, '33333333-0a5e-4a33-9d3e-5b7a1e0c2f11', 'shared', 0, 3, NULL)",
    )
    owners = tmp_path / "owners.json"
    owners.write_text(json.dumps({root: "project-a"}))
    run(target, "db", "import-placement", scratch_source, "--owners", str(owners))
    assert owned_by(target) == {root: "project-a", child: "project-a", alone: None}


def owned_by(env: dict[str, str]) -> dict[str, str | None]:
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    async def read() -> dict[str, str | None]:
        engine = create_async_engine(env["ALLOT_DATABASE_URL"])
        async with engine.connect() as conn:
            rows = await conn.execute(text("SELECT uuid, owner_project_id FROM resource_providers"))
            found = {uuid: owner for uuid, owner in rows}
        await engine.dispose()
        return found

    return asyncio.run(read())


def test_verify_lists_what_differs_and_exits_1(target: dict[str, str], scratch_source: str) -> None:
    sql(
        scratch_source,
        "INSERT INTO resource_providers (id, uuid, name, generation, root_provider_id) "
        "VALUES (1, '44444444-0a5e-4a33-9d3e-5b7a1e0c2f11', 'cn1', 7, 1)",
    )
    run(target, "db", "import-placement", scratch_source)
    sql(scratch_source, "UPDATE resource_providers SET generation = 8")  # Placement moved on
    done = run(target, "db", "verify-import", scratch_source, check=False)
    assert done.returncode == 1
    assert (
        "providers (uuid, name, generation, parent, root): 1 in Placement, 1 in allot"
        in done.stdout
    )
    assert "only in Placement: ('44444444-0a5e-4a33-9d3e-5b7a1e0c2f11', 'cn1', 8.0" in done.stdout
    assert "only in allot: ('44444444-0a5e-4a33-9d3e-5b7a1e0c2f11', 'cn1', 7.0" in done.stdout


def test_a_nul_in_a_mariadb_source_is_listed_and_nothing_is_written(
    target: dict[str, str], tmp_path: Path
) -> None:
    """MariaDB stores U+0000 in a name (PostgreSQL cannot): allot never holds one."""
    name = f"placement_nul_{os.getpid()}_{free_port()}"
    database = create_database("mariadb", name)
    try:
        sync_schema(database, tmp_path)
        statement = (
            "INSERT INTO resource_providers (id, uuid, name, generation, root_provider_id) "
            "VALUES (1, '55555555-0a5e-4a33-9d3e-5b7a1e0c2f11', CONCAT('cn', CHAR(0), '1'), 0, 1)"
        )
        subprocess.run(["mysql", "-h", "127.0.0.1", "-uroot", name, "-e", statement], check=True)
        error = refused(target, database)
        assert "55555555-0a5e-4a33-9d3e-5b7a1e0c2f11': contains a NUL character" in error
        assert target_rows(target) == EMPTY
    finally:
        drop_database("mariadb", name)
