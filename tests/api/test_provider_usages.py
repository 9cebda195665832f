"""GET /resource_providers/{uuid}/usages, and what allocations forbid on inventories and
providers: a class in use cannot go or shrink below its usage; a provider in use stays."""

from __future__ import annotations

import httpx
import pytest

from tests.allocation_helpers import body, generation_of, make_provider, new_uuid, v

MISSING = "2e1dda56-8b18-4fb9-8c5c-3125891b7143"


@pytest.fixture
async def used(client: httpx.AsyncClient) -> tuple[str, str]:
    """A provider with VCPU, MEMORY_MB and DISK_GB, and one consumer using VCPU and memory."""
    rp = await make_provider(
        client,
        {
            "VCPU": {"total": 8},
            "MEMORY_MB": {"total": 4096, "reserved": 512},
            "DISK_GB": {"total": 100},
        },
    )
    consumer = new_uuid()
    put = await client.put(
        f"/allocations/{consumer}", json=body({rp: {"VCPU": 2, "MEMORY_MB": 512}})
    )
    assert put.status_code == 204, put.text
    return rp, consumer


async def test_usages_like_the_reference_sample(
    client: httpx.AsyncClient, used: tuple[str, str]
) -> None:
    rp, _ = used
    response = await client.get(f"/resource_providers/{rp}/usages")
    assert response.status_code == 200
    assert response.json() == {
        "resource_provider_generation": await generation_of(client, rp),
        "usages": {"DISK_GB": 0, "MEMORY_MB": 512, "VCPU": 2},
    }
    assert response.headers["cache-control"] == "no-cache"
    assert response.headers["last-modified"].endswith("GMT")
    old = await client.get(f"/resource_providers/{rp}/usages", headers=v("1.14"))
    assert old.json()["usages"]["VCPU"] == 2
    assert "cache-control" not in old.headers


async def test_usages_of_an_empty_provider_and_a_missing_one(client: httpx.AsyncClient) -> None:
    rp = await make_provider(client)
    response = await client.get(f"/resource_providers/{rp}/usages", headers=v("1.0"))
    assert response.json() == {"resource_provider_generation": 0, "usages": {}}
    missing = await client.get(f"/resource_providers/{MISSING}/usages")
    assert missing.status_code == 404


async def test_usages_follow_allocation_changes(
    client: httpx.AsyncClient, used: tuple[str, str]
) -> None:
    rp, consumer = used
    assert (await client.delete(f"/allocations/{consumer}")).status_code == 204
    response = await client.get(f"/resource_providers/{rp}/usages")
    assert response.json()["usages"] == {"DISK_GB": 0, "MEMORY_MB": 0, "VCPU": 0}


async def test_a_class_in_use_cannot_be_removed(
    client: httpx.AsyncClient, used: tuple[str, str]
) -> None:
    rp, _ = used
    url = f"/resource_providers/{rp}/inventories"
    before = (await client.get(url)).json()
    generation = before["resource_provider_generation"]
    for response in (
        await client.delete(f"{url}/VCPU"),
        await client.delete(url),
        await client.put(
            url,
            json={
                "resource_provider_generation": generation,
                "inventories": {"DISK_GB": before["inventories"]["DISK_GB"]},
            },
        ),
    ):
        assert response.status_code == 409
        assert response.json()["errors"][0]["code"] == "placement.inventory.inuse"
    assert (await client.get(url)).json() == before
    # A class nobody uses can go.
    assert (await client.delete(f"{url}/DISK_GB")).status_code == 204


async def test_capacity_cannot_shrink_below_usage(
    client: httpx.AsyncClient, used: tuple[str, str]
) -> None:
    """allot refuses what Placement allows with a warning: allocations above capacity."""
    rp, _ = used
    url = f"/resource_providers/{rp}/inventories/MEMORY_MB"
    generation = await generation_of(client, rp)
    # Usage is 512: (1024 - 513) * 1.0 = 511 is too little, (1024 - 512) = 512 is enough.
    shrunk = await client.put(
        url, json={"resource_provider_generation": generation, "total": 1024, "reserved": 513}
    )
    assert shrunk.status_code == 409
    assert shrunk.json()["errors"][0]["code"] == "placement.inventory.inuse"
    assert (await client.get(url)).json()["total"] == 4096
    exact = await client.put(
        url, json={"resource_provider_generation": generation, "total": 1024, "reserved": 512}
    )
    assert exact.status_code == 200
    assert exact.json()["resource_provider_generation"] == generation + 1


async def test_a_provider_with_allocations_cannot_be_deleted(
    client: httpx.AsyncClient, used: tuple[str, str]
) -> None:
    rp, consumer = used
    response = await client.delete(f"/resource_providers/{rp}")
    assert response.status_code == 409
    assert response.json()["errors"][0]["code"] == "placement.resource_provider.inuse"
    assert (await client.get(f"/resource_providers/{rp}/usages")).json()["usages"]["VCPU"] == 2
    assert (await client.delete(f"/allocations/{consumer}")).status_code == 204
    assert (await client.delete(f"/resource_providers/{rp}")).status_code == 204


async def test_resources_filter_counts_usage(
    client: httpx.AsyncClient, used: tuple[str, str]
) -> None:
    rp, _ = used

    async def found(query: str) -> list[str]:
        response = await client.get(f"/resource_providers?{query}")
        return [p["uuid"] for p in response.json()["resource_providers"]]

    assert await found("resources=VCPU:6") == [rp]
    assert await found("resources=VCPU:7") == []
    assert await found("resources=MEMORY_MB:3072") == [rp]
    assert await found("resources=MEMORY_MB:3073") == []
