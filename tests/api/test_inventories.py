"""/resource_providers/{uuid}/inventories: a provider's inventory, guarded by its generation."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

RP = "3b4005be-d64b-456f-ba36-0ffd02718868"
MISSING = "2e1dda56-8b18-4fb9-8c5c-3125891b7143"
MAX_INT = 2**31 - 1
INVENTORIES = f"/resource_providers/{RP}/inventories"


def v(version: str) -> dict[str, str]:
    return {"openstack-api-version": f"placement {version}"}


@pytest.fixture
async def rp(client: httpx.AsyncClient) -> str:
    response = await client.post("/resource_providers", json={"name": "rp", "uuid": RP})
    assert response.status_code == 200
    return RP


async def put_all(
    client: httpx.AsyncClient, generation: int, inventories: dict[str, Any], version: str = "latest"
) -> httpx.Response:
    return await client.put(
        INVENTORIES,
        json={"resource_provider_generation": generation, "inventories": inventories},
        headers=v(version),
    )


async def test_empty_inventory(client: httpx.AsyncClient, rp: str) -> None:
    response = await client.get(INVENTORIES)
    assert response.status_code == 200
    assert response.json() == {"inventories": {}, "resource_provider_generation": 0}
    assert response.headers["cache-control"] == "no-cache"


async def test_replace_all_fills_defaults_like_the_reference_sample(
    client: httpx.AsyncClient, rp: str
) -> None:
    response = await put_all(
        client,
        0,
        {
            "MEMORY_MB": {"allocation_ratio": 2.0, "max_unit": 16, "step_size": 4, "total": 128},
            "VCPU": {"allocation_ratio": 10.0, "reserved": 2, "total": 64},
        },
    )
    assert response.status_code == 200
    expected = {
        "inventories": {
            "MEMORY_MB": {
                "allocation_ratio": 2.0,
                "max_unit": 16,
                "min_unit": 1,
                "reserved": 0,
                "step_size": 4,
                "total": 128,
            },
            "VCPU": {
                "allocation_ratio": 10.0,
                "max_unit": MAX_INT,
                "min_unit": 1,
                "reserved": 2,
                "step_size": 1,
                "total": 64,
            },
        },
        "resource_provider_generation": 1,
    }
    assert response.json() == expected
    assert (await client.get(INVENTORIES)).json() == expected
    provider = await client.get(f"/resource_providers/{RP}")
    assert provider.json()["generation"] == 1


async def test_replace_all_removes_what_is_not_named(client: httpx.AsyncClient, rp: str) -> None:
    await put_all(client, 0, {"VCPU": {"total": 4}, "DISK_GB": {"total": 10}})
    response = await put_all(client, 1, {"DISK_GB": {"total": 20}})
    assert response.status_code == 200
    assert list(response.json()["inventories"]) == ["DISK_GB"]
    assert response.json()["inventories"]["DISK_GB"]["total"] == 20
    emptied = await put_all(client, 2, {}, version="1.4")
    assert emptied.json() == {"inventories": {}, "resource_provider_generation": 3}


async def test_stale_generation_is_409_and_changes_nothing(
    client: httpx.AsyncClient, rp: str
) -> None:
    await put_all(client, 0, {"VCPU": {"total": 4}})
    stale = await put_all(client, 0, {"VCPU": {"total": 8}})
    assert stale.status_code == 409
    assert stale.json()["errors"][0]["code"] == "placement.concurrent_update"
    current = (await client.get(INVENTORIES)).json()
    assert current["inventories"]["VCPU"]["total"] == 4
    assert current["resource_provider_generation"] == 1


@pytest.mark.parametrize(
    "inventory",
    [
        {"total": 0},
        {"total": -1},
        {"total": MAX_INT + 1},
        {"total": 10, "reserved": MAX_INT + 1},
        {"total": 10, "reserved": 11},
        {"total": 10, "reserved": 10},
        {"total": 10, "min_unit": 0},
        {"total": 10, "max_unit": 0},
        {"total": 10, "step_size": 0},
        {"total": 10, "min_unit": 5, "max_unit": 4},
        {"total": 10, "max_unit": 4, "step_size": 5},
        {"total": 10, "allocation_ratio": 0},
        {"total": 10, "allocation_ratio": -1.0},
        {"total": 10, "allocation_ratio": 3.5e38},
        {"total": "10"},
        {"total": True},
        {"total": 10.5},
        {"reserved": 1},
        {"total": 10, "colour": "red"},
    ],
)
async def test_bad_inventory_is_400_and_changes_nothing(
    client: httpx.AsyncClient, rp: str, inventory: dict[str, Any]
) -> None:
    await put_all(client, 0, {"DISK_GB": {"total": 5}})
    response = await put_all(client, 1, {"VCPU": inventory, "DISK_GB": {"total": 6}}, "1.25")
    assert response.status_code == 400
    current = (await client.get(INVENTORIES)).json()
    assert current["resource_provider_generation"] == 1
    assert list(current["inventories"]) == ["DISK_GB"]
    assert current["inventories"]["DISK_GB"]["total"] == 5


async def test_unknown_or_malformed_class_is_400(client: httpx.AsyncClient, rp: str) -> None:
    for name in ("CUSTOM_NOPE", "bad_class", "NO_CLASS_14"):
        response = await put_all(client, 0, {name: {"total": 1}})
        assert response.status_code == 400


async def test_reserved_may_equal_total_from_1_26(client: httpx.AsyncClient, rp: str) -> None:
    before = await put_all(client, 0, {"VCPU": {"total": 10, "reserved": 10}}, "1.25")
    assert before.status_code == 400
    after = await put_all(client, 0, {"VCPU": {"total": 10, "reserved": 10}}, "1.26")
    assert after.status_code == 200
    over = await put_all(client, 1, {"VCPU": {"total": 10, "reserved": 11}}, "1.26")
    assert over.status_code == 400


@pytest.mark.parametrize(
    "body",
    [
        {"inventories": {}},
        {"resource_provider_generation": 0},
        {"resource_provider_generation": "0", "inventories": {}},
        # A generation no provider can have (the column is 32-bit, never negative).
        {"resource_provider_generation": -1, "inventories": {}},
        {"resource_provider_generation": 2**31, "inventories": {}},
        {"resource_provider_generation": 0, "inventories": {}, "extra": 1},
        {"house": "red", "car": "blue"},
    ],
)
async def test_bad_replace_bodies_are_400(
    client: httpx.AsyncClient, rp: str, body: dict[str, Any]
) -> None:
    response = await client.put(INVENTORIES, json=body)
    assert response.status_code == 400


async def test_post_one_inventory(client: httpx.AsyncClient, rp: str) -> None:
    response = await client.post(
        INVENTORIES,
        json={
            "resource_class": "DISK_GB",
            "total": 2048,
            "reserved": 512,
            "min_unit": 10,
            "max_unit": 1024,
            "step_size": 10,
            "allocation_ratio": 1.0,
        },
    )
    assert response.status_code == 201
    assert response.headers["location"] == f"http://allot.test{INVENTORIES}/DISK_GB"
    assert response.json() == {
        "total": 2048,
        "reserved": 512,
        "min_unit": 10,
        "max_unit": 1024,
        "step_size": 10,
        "allocation_ratio": 1.0,
        "resource_provider_generation": 1,
    }
    again = await client.post(INVENTORIES, json={"resource_class": "DISK_GB", "total": 1})
    assert again.status_code == 409
    unknown = await client.post(INVENTORIES, json={"resource_class": "NO_CLASS_14", "total": 1})
    assert unknown.status_code == 400
    over = await client.post(
        INVENTORIES, json={"resource_class": "VCPU", "total": 256, "reserved": 512}
    )
    assert over.status_code == 400


async def test_show_update_delete_one(client: httpx.AsyncClient, rp: str) -> None:
    await put_all(client, 0, {"VCPU": {"total": 4, "allocation_ratio": 16.0}})
    shown = await client.get(f"{INVENTORIES}/VCPU")
    assert shown.json() == {
        "allocation_ratio": 16.0,
        "max_unit": MAX_INT,
        "min_unit": 1,
        "reserved": 0,
        "resource_provider_generation": 1,
        "step_size": 1,
        "total": 4,
    }
    assert (await client.get(f"{INVENTORIES}/DISK_GB")).status_code == 404
    assert (await client.get(f"{INVENTORIES}/HOUSE")).status_code == 404
    updated = await client.put(
        f"{INVENTORIES}/VCPU", json={"resource_provider_generation": 1, "total": 50}
    )
    assert updated.status_code == 200
    assert updated.json() == {
        "allocation_ratio": 1.0,
        "max_unit": MAX_INT,
        "min_unit": 1,
        "reserved": 0,
        "resource_provider_generation": 2,
        "step_size": 1,
        "total": 50,
    }
    stale = await client.put(
        f"{INVENTORIES}/VCPU", json={"resource_provider_generation": 1, "total": 60}
    )
    assert stale.status_code == 409
    absent = await client.put(
        f"{INVENTORIES}/MEMORY_MB", json={"resource_provider_generation": 2, "total": 60}
    )
    assert absent.status_code == 400
    assert (await client.delete(f"{INVENTORIES}/VCPU")).status_code == 204
    assert (await client.delete(f"{INVENTORIES}/VCPU")).status_code == 404
    assert (await client.get(INVENTORIES)).json() == {
        "inventories": {},
        "resource_provider_generation": 3,
    }


async def test_delete_all_from_1_5(client: httpx.AsyncClient, rp: str) -> None:
    await put_all(client, 0, {"VCPU": {"total": 4}})
    early = await client.delete(INVENTORIES, headers=v("1.4"))
    assert early.status_code == 405
    assert (await client.delete(INVENTORIES, headers=v("1.5"))).status_code == 204
    assert (await client.delete(INVENTORIES, headers=v("1.5"))).status_code == 204
    assert (await client.get(INVENTORIES)).json() == {
        "inventories": {},
        "resource_provider_generation": 3,
    }


async def test_missing_provider_is_404(client: httpx.AsyncClient) -> None:
    base = f"/resource_providers/{MISSING}/inventories"
    assert (await client.get(base)).status_code == 404
    assert (await client.get(f"{base}/VCPU")).status_code == 404
    assert (await client.delete(base)).status_code == 404
    put = await client.put(base, json={"resource_provider_generation": 0, "inventories": {}})
    assert put.status_code == 404
    # As in Placement, a missing provider is reported before a bad body.
    assert (await client.put(base, json={"bad": 1})).status_code == 404
    assert (await client.post(base, json={"bad": 1})).status_code == 404
    assert (await client.put(f"{base}/VCPU", json={"bad": 1})).status_code == 404


async def test_cache_headers_only_from_1_15(client: httpx.AsyncClient, rp: str) -> None:
    await put_all(client, 0, {"VCPU": {"total": 4}})
    old = await client.get(f"{INVENTORIES}/VCPU", headers=v("1.14"))
    assert "cache-control" not in old.headers
    new = await client.get(f"{INVENTORIES}/VCPU", headers=v("1.15"))
    assert new.headers["cache-control"] == "no-cache"
    assert new.headers["last-modified"].endswith("GMT")


async def test_deleting_a_provider_takes_its_inventory(client: httpx.AsyncClient, rp: str) -> None:
    await put_all(client, 0, {"VCPU": {"total": 4}})
    assert (await client.delete(f"/resource_providers/{RP}")).status_code == 204
    assert (await client.get(INVENTORIES)).status_code == 404
