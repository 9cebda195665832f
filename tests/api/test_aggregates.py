"""/resource_providers/{uuid}/aggregates (1.1+): aggregate membership; generation from 1.19."""

from __future__ import annotations

import httpx
import pytest

RP = "3b4005be-d64b-456f-ba36-0ffd02718868"
MISSING = "2e1dda56-8b18-4fb9-8c5c-3125891b7143"
AGG1 = "42896e0d-205d-4fe3-bd1e-100924931787"
AGG2 = "5e08ea53-c4c6-448e-9334-ac4953de3cfa"
AGGREGATES = f"/resource_providers/{RP}/aggregates"


def v(version: str) -> dict[str, str]:
    return {"openstack-api-version": f"placement {version}"}


@pytest.fixture
async def rp(client: httpx.AsyncClient) -> str:
    response = await client.post("/resource_providers", json={"name": "rp", "uuid": RP})
    assert response.status_code == 200
    return RP


async def test_from_1_19_like_the_reference_sample(client: httpx.AsyncClient, rp: str) -> None:
    empty = await client.get(AGGREGATES)
    assert empty.json() == {"aggregates": [], "resource_provider_generation": 0}
    response = await client.put(
        AGGREGATES, json={"aggregates": [AGG1, AGG2], "resource_provider_generation": 0}
    )
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-cache"
    expected = {"aggregates": [AGG1, AGG2], "resource_provider_generation": 1}
    assert response.json() == expected
    assert (await client.get(AGGREGATES)).json() == expected
    # Every PUT from 1.19 moves the generation, even one that changes nothing.
    again = await client.put(
        AGGREGATES, json={"aggregates": [AGG1, AGG2], "resource_provider_generation": 1}
    )
    assert again.json()["resource_provider_generation"] == 2


async def test_before_1_19_a_bare_list_without_generation(
    client: httpx.AsyncClient, rp: str
) -> None:
    old = v("1.18")
    response = await client.put(AGGREGATES, json=[AGG2, AGG1], headers=old)
    assert response.status_code == 200
    assert response.json() == {"aggregates": [AGG2, AGG1]}
    shown = await client.get(AGGREGATES, headers=old)
    assert shown.json() == {"aggregates": [AGG1, AGG2]}
    provider = await client.get(f"/resource_providers/{RP}")
    assert provider.json()["generation"] == 0
    cleared = await client.put(AGGREGATES, json=[], headers=old)
    assert cleared.json() == {"aggregates": []}


async def test_stale_generation_is_409(client: httpx.AsyncClient, rp: str) -> None:
    await client.put(AGGREGATES, json={"aggregates": [AGG1], "resource_provider_generation": 0})
    stale = await client.put(AGGREGATES, json={"aggregates": [], "resource_provider_generation": 0})
    assert stale.status_code == 409
    assert stale.json()["errors"][0]["code"] == "placement.concurrent_update"
    assert (await client.get(AGGREGATES)).json()["aggregates"] == [AGG1]


@pytest.mark.parametrize(
    ("body", "version"),
    [
        ([AGG1], "1.19"),
        ({"aggregates": [AGG1]}, "1.19"),
        ({"aggregates": ["not-a-uuid"], "resource_provider_generation": 0}, "1.19"),
        ({"aggregates": [AGG1, AGG1], "resource_provider_generation": 0}, "1.19"),
        ({"aggregates": [AGG1], "resource_provider_generation": 0, "x": 1}, "1.19"),
        ({"aggregates": [AGG1], "resource_provider_generation": 0}, "1.18"),
        (["not-a-uuid"], "1.18"),
        ([AGG1, AGG1], "1.18"),
        ([1], "1.18"),
    ],
)
async def test_bad_bodies_are_400_and_change_nothing(
    client: httpx.AsyncClient, rp: str, body: object, version: str
) -> None:
    response = await client.put(AGGREGATES, json=body, headers=v(version))
    assert response.status_code == 400
    assert (await client.get(AGGREGATES)).json() == {
        "aggregates": [],
        "resource_provider_generation": 0,
    }


async def test_not_there_at_1_0_and_404_for_missing_provider(
    client: httpx.AsyncClient, rp: str
) -> None:
    assert (await client.get(AGGREGATES, headers=v("1.0"))).status_code == 404
    missing = f"/resource_providers/{MISSING}/aggregates"
    assert (await client.get(missing)).status_code == 404
    put = await client.put(missing, json={"aggregates": [], "resource_provider_generation": 0})
    assert put.status_code == 404
    # As in Placement, a missing provider is reported before a bad body.
    assert (await client.put(missing, json=[])).status_code == 404


async def test_aggregates_are_shared_between_providers(client: httpx.AsyncClient, rp: str) -> None:
    await client.post("/resource_providers", json={"name": "outside"})
    other = await client.post("/resource_providers", json={"name": "other"})
    other_uuid = other.json()["uuid"]
    await client.put(AGGREGATES, json={"aggregates": [AGG1], "resource_provider_generation": 0})
    response = await client.put(
        f"/resource_providers/{other_uuid}/aggregates",
        json={"aggregates": [AGG1, AGG2], "resource_provider_generation": 0},
    )
    assert response.status_code == 200
    members = await client.get(f"/resource_providers?member_of={AGG1}")
    assert sorted(p["name"] for p in members.json()["resource_providers"]) == ["other", "rp"]
