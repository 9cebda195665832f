"""POST /allocations (1.13+): many consumers in one all-or-nothing write."""

from __future__ import annotations

import json
from typing import Any

import httpx
import os_resource_classes
import pytest
from fastapi import FastAPI

from tests.allocation_helpers import (
    OTHER_PROJECT,
    OTHER_USER,
    PROJECT,
    USER,
    body,
    generation_of,
    make_provider,
    new_uuid,
    snapshot,
    v,
)
from tests.conftest import AppFactory, auth, make_client


@pytest.fixture
async def compute(client: httpx.AsyncClient) -> str:
    return await make_provider(client, {"VCPU": {"total": 16}, "MEMORY_MB": {"total": 2048}})


@pytest.fixture
async def storage(client: httpx.AsyncClient) -> str:
    return await make_provider(client, {"DISK_GB": {"total": 4096}})


def entry(allocations: dict[str, dict[str, int]], **kw: Any) -> dict[str, Any]:
    return body(allocations, **kw)


async def usages(client: httpx.AsyncClient, project: str = PROJECT) -> dict[str, int]:
    response = await client.get(f"/usages?project_id={project}", headers=v("1.9"))
    result: dict[str, int] = response.json()["usages"]
    return result


async def test_not_there_before_1_13(client: httpx.AsyncClient) -> None:
    response = await client.post("/allocations", json={}, headers=v("1.12"))
    assert response.status_code == 404


async def test_two_consumers_then_release_one(
    client: httpx.AsyncClient, compute: str, storage: str
) -> None:
    instance, migration = new_uuid(), new_uuid()
    created = await client.post(
        "/allocations",
        json={
            instance: entry({compute: {"VCPU": 2, "MEMORY_MB": 1024}, storage: {"DISK_GB": 5}}),
            migration: entry({compute: {"VCPU": 2, "MEMORY_MB": 1024}}, consumer_type="MIGRATION"),
        },
    )
    assert created.status_code == 204
    shown = (await client.get(f"/allocations/{instance}")).json()
    assert shown["consumer_generation"] == 1
    assert shown["allocations"][storage]["resources"] == {"DISK_GB": 5}
    assert await usages(client) == {"DISK_GB": 5, "VCPU": 4, "MEMORY_MB": 2048}

    released = await client.post(
        "/allocations",
        json={
            instance: entry(
                {compute: {"VCPU": 2, "MEMORY_MB": 1024}, storage: {"DISK_GB": 5}}, generation=1
            ),
            migration: entry({}, generation=1),
        },
    )
    assert released.status_code == 204
    assert await usages(client) == {"DISK_GB": 5, "VCPU": 2, "MEMORY_MB": 1024}
    assert (await client.get(f"/allocations/{migration}")).json() == {"allocations": {}}


async def test_consumers_of_different_projects(
    client: httpx.AsyncClient, compute: str, storage: str
) -> None:
    response = await client.post(
        "/allocations",
        json={
            new_uuid(): entry({compute: {"VCPU": 2}, storage: {"DISK_GB": 5}}),
            new_uuid(): entry({compute: {"VCPU": 3}}, project=OTHER_PROJECT, user=OTHER_USER),
        },
    )
    assert response.status_code == 204
    assert await usages(client) == {"VCPU": 2, "DISK_GB": 5}
    assert await usages(client, OTHER_PROJECT) == {"VCPU": 3}


async def test_all_or_nothing(
    client: httpx.AsyncClient, compute: str, storage: str, app: FastAPI
) -> None:
    """One consumer that does not fit refuses the whole request: nothing is written."""
    existing = new_uuid()
    await client.put(f"/allocations/{existing}", json=body({compute: {"VCPU": 1}}))
    before = await snapshot(app)
    response = await client.post(
        "/allocations",
        json={
            new_uuid(): entry({storage: {"DISK_GB": 5}}),
            existing: entry({compute: {"VCPU": 2}}, generation=1),
            new_uuid(): entry({compute: {"MEMORY_MB": 2049}}),
        },
    )
    assert response.status_code == 409
    assert response.json()["errors"][0]["source"]["pointer"].endswith("/resources/MEMORY_MB")
    assert await snapshot(app) == before


async def test_capacity_is_checked_across_consumers(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    """Three consumers of one VCPU each on a provider with two: refused (Placement bug 1778743)."""
    rp = await make_provider(client, {"VCPU": {"total": 2}})
    before = await snapshot(app)
    response = await client.post(
        "/allocations", json={new_uuid(): entry({rp: {"VCPU": 1}}) for _ in range(3)}
    )
    assert response.status_code == 409
    assert await snapshot(app) == before
    assert (await client.get(f"/resource_providers/{rp}/usages")).json()["usages"] == {"VCPU": 0}


async def test_thousands_of_allocations_in_one_request(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    """More allocation rows than PostgreSQL binds in one statement (7,140 values x 5): all
    accepted; and the same request that does not fit by one unit leaves nothing behind."""
    classes = sorted(os_resource_classes.STANDARDS)
    rp = await make_provider(client, {rc: {"total": 340} for rc in classes})
    too_many = {new_uuid(): entry({rp: {rc: 1 for rc in classes}}) for _ in range(341)}
    before = await snapshot(app)
    assert (await client.post("/allocations", json=too_many)).status_code == 409
    assert await snapshot(app) == before

    fits = dict(list(too_many.items())[:340])
    assert (await client.post("/allocations", json=fits)).status_code == 204
    usages = (await client.get(f"/resource_providers/{rp}/usages")).json()["usages"]
    assert usages == {rc: 340 for rc in classes}


async def test_generations(client: httpx.AsyncClient, compute: str) -> None:
    a, b = new_uuid(), new_uuid()
    await client.post("/allocations", json={a: entry({compute: {"VCPU": 1}})})
    assert await generation_of(client, compute) == 2
    stale = await client.post(
        "/allocations",
        json={
            a: entry({compute: {"VCPU": 2}}, generation=1),
            b: entry({compute: {"VCPU": 2}}, generation=1),
        },
    )
    assert stale.status_code == 409
    assert stale.json()["errors"][0]["code"] == "placement.concurrent_update"
    missing = {a: entry({compute: {"VCPU": 2}}, generation=1)}
    del missing[a]["consumer_generation"]
    assert (await client.post("/allocations", json=missing)).status_code == 400
    ok = await client.post(
        "/allocations",
        json={
            a: entry({compute: {"VCPU": 2}}, generation=1),
            b: entry({compute: {"VCPU": 2}}),
        },
    )
    assert ok.status_code == 204
    # One bump per write, however many consumers it names.
    assert await generation_of(client, compute) == 3


async def test_releasing_bumps_the_providers_released(
    client: httpx.AsyncClient, compute: str, storage: str
) -> None:
    consumer = new_uuid()
    await client.post("/allocations", json={consumer: entry({storage: {"DISK_GB": 1}})})
    assert await generation_of(client, storage) == 2
    await client.post("/allocations", json={consumer: entry({}, generation=1)})
    assert await generation_of(client, storage) == 3


async def test_a_new_consumer_with_nothing_is_not_created(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    before = await snapshot(app)
    response = await client.post("/allocations", json={new_uuid(): entry({})})
    assert response.status_code == 204
    assert await snapshot(app) == before


async def test_one_consumer_named_twice_is_400(
    client: httpx.AsyncClient, compute: str, app: FastAPI
) -> None:
    consumer = new_uuid()
    one = json.dumps(entry({compute: {"VCPU": 1}}))
    literal = "{" + f'"{consumer}": {one}, "{consumer}": {one}' + "}"
    before = await snapshot(app)
    twice = await client.post(
        "/allocations", content=literal, headers={"content-type": "application/json"}
    )
    assert twice.status_code == 400
    spelled_twice = await client.post(
        "/allocations",
        json={consumer: entry({compute: {"VCPU": 1}}), consumer.upper(): entry({})},
    )
    assert spelled_twice.status_code == 400
    assert await snapshot(app) == before


@pytest.mark.parametrize(
    "document",
    [
        {},
        [],
        {"not-a-uuid": {}},
        {"c5a6d2f4-2f73-4a34-a1c5-6ff1f5f3f0aa": {"cow": "moo"}},
        {
            "c5a6d2f4-2f73-4a34-a1c5-6ff1f5f3f0aa": {
                "allocations": {"c5a6d2f4-2f73-4a34-a1c5-6ff1f5f3f0bb": {"cow": "moo"}},
                "project_id": PROJECT,
                "user_id": USER,
                "consumer_generation": None,
                "consumer_type": "INSTANCE",
            }
        },
    ],
    ids=["empty", "list", "key-not-uuid", "shallow", "deep"],
)
async def test_malformed_bodies(client: httpx.AsyncClient, app: FastAPI, document: Any) -> None:
    before = await snapshot(app)
    response = await client.post("/allocations", json=document)
    assert response.status_code == 400
    assert await snapshot(app) == before


async def test_bounded_number_of_consumers(client: httpx.AsyncClient, compute: str) -> None:
    document = {new_uuid(): entry({compute: {"VCPU": 1}}) for _ in range(1001)}
    response = await client.post("/allocations", json=document)
    assert response.status_code == 400


async def test_bounded_number_of_provider_entries_in_all(
    app_factory: AppFactory, tokens: dict[str, str], app: FastAPI
) -> None:
    """10,000 provider entries summed over the consumers at most, whatever the body limit: a
    request past that is 400; one at it reaches the database and is answered as any other."""
    headers = {**auth(tokens["admin"]), "openstack-api-version": "placement latest"}

    def document(consumers: int) -> dict[str, Any]:
        providers = {new_uuid(): {"VCPU": 1} for _ in range(100)}
        return {new_uuid(): entry(providers) for _ in range(consumers)}

    before = await snapshot(app)
    async with (
        app_factory(max_body_bytes=16 * 1_048_576) as roomy,
        make_client(roomy, headers) as c,
    ):
        too_many = await c.post("/allocations", json=document(101))
        assert too_many.status_code == 400
        assert too_many.json()["errors"][0]["code"] == "allot.validation"
        at_the_bound = await c.post("/allocations", json=document(100))
        assert at_the_bound.status_code == 400
        assert at_the_bound.json()["errors"][0]["code"] == "placement.resource_provider.not_found"
    assert await snapshot(app) == before


async def test_unknown_provider_and_class(
    client: httpx.AsyncClient, compute: str, app: FastAPI
) -> None:
    before = await snapshot(app)
    unknown_rp = await client.post(
        "/allocations", json={new_uuid(): entry({new_uuid(): {"VCPU": 1}})}
    )
    assert unknown_rp.status_code == 400
    unknown_rc = await client.post(
        "/allocations", json={new_uuid(): entry({compute: {"CUSTOM_PONY": 1}})}
    )
    assert unknown_rc.status_code == 400
    no_inventory = await client.post(
        "/allocations", json={new_uuid(): entry({compute: {"PCI_DEVICE": 1}})}
    )
    assert no_inventory.status_code == 409
    assert await snapshot(app) == before


async def test_mappings_and_consumer_types_by_version(
    client: httpx.AsyncClient, compute: str
) -> None:
    consumer = new_uuid()
    mapped = {consumer: {**entry({compute: {"VCPU": 1}}), "mappings": {"": [compute]}}}
    assert (await client.post("/allocations", json=mapped, headers=v("1.37"))).status_code == 400
    untyped = {consumer: {**entry({compute: {"VCPU": 1}}, consumer_type=None)}}
    assert (await client.post("/allocations", json=untyped)).status_code == 400
    assert (await client.post("/allocations", json=mapped)).status_code == 204
    early = {consumer: {**entry({compute: {"VCPU": 1}}, consumer_type=None), "mappings": {}}}
    del early[consumer]["consumer_generation"]
    del early[consumer]["mappings"]
    assert (await client.post("/allocations", json=early, headers=v("1.13"))).status_code == 204
