"""/resource_providers/{uuid}/traits (1.6+): a provider's traits, guarded by its generation."""

from __future__ import annotations

import httpx
import pytest

RP = "3b4005be-d64b-456f-ba36-0ffd02718868"
MISSING = "2e1dda56-8b18-4fb9-8c5c-3125891b7143"
TRAITS = f"/resource_providers/{RP}/traits"


def v(version: str) -> dict[str, str]:
    return {"openstack-api-version": f"placement {version}"}


@pytest.fixture
async def rp(client: httpx.AsyncClient) -> str:
    response = await client.post("/resource_providers", json={"name": "rp", "uuid": RP})
    assert response.status_code == 200
    for name in ("CUSTOM_HW_FPGA_CLASS1", "CUSTOM_HW_FPGA_CLASS3"):
        assert (await client.put(f"/traits/{name}")).status_code == 201
    return RP


async def test_set_and_read_traits_like_the_reference_sample(
    client: httpx.AsyncClient, rp: str
) -> None:
    empty = await client.get(TRAITS)
    assert empty.json() == {"traits": [], "resource_provider_generation": 0}
    body = {
        "resource_provider_generation": 0,
        "traits": ["CUSTOM_HW_FPGA_CLASS3", "CUSTOM_HW_FPGA_CLASS1"],
    }
    response = await client.put(TRAITS, json=body)
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-cache"
    expected = {
        "resource_provider_generation": 1,
        "traits": ["CUSTOM_HW_FPGA_CLASS1", "CUSTOM_HW_FPGA_CLASS3"],
    }
    assert response.json() == expected
    assert (await client.get(TRAITS)).json() == expected
    provider = await client.get(f"/resource_providers/{RP}")
    assert provider.json()["generation"] == 1


async def test_setting_the_same_traits_keeps_the_generation(
    client: httpx.AsyncClient, rp: str
) -> None:
    await client.put(TRAITS, json={"resource_provider_generation": 0, "traits": ["HW_CPU_X86_AVX"]})
    same = await client.put(
        TRAITS, json={"resource_provider_generation": 1, "traits": ["HW_CPU_X86_AVX"]}
    )
    assert same.json()["resource_provider_generation"] == 1
    changed = await client.put(
        TRAITS, json={"resource_provider_generation": 1, "traits": ["HW_CPU_X86_SSE"]}
    )
    assert changed.json() == {"traits": ["HW_CPU_X86_SSE"], "resource_provider_generation": 2}


async def test_stale_generation_is_409(client: httpx.AsyncClient, rp: str) -> None:
    await client.put(TRAITS, json={"resource_provider_generation": 0, "traits": ["HW_CPU_X86_AVX"]})
    stale = await client.put(TRAITS, json={"resource_provider_generation": 0, "traits": []})
    assert stale.status_code == 409
    assert stale.json()["errors"][0]["code"] == "placement.concurrent_update"
    assert (await client.get(TRAITS)).json()["traits"] == ["HW_CPU_X86_AVX"]


@pytest.mark.parametrize(
    "body",
    [
        {"resource_provider_generation": 0, "traits": ["CUSTOM_NOT_THERE"]},
        {"resource_provider_generation": 0, "traits": [""]},
        {"resource_provider_generation": 0, "traits": ["A" * 256]},
        {"resource_provider_generation": 0, "traits": "HW_CPU_X86_AVX"},
        {"resource_provider_generation": 0, "traits": [1]},
        {"traits": ["HW_CPU_X86_AVX"]},
        {"resource_provider_generation": 0},
        {"resource_provider_generation": 0, "traits": [], "extra": True},
    ],
)
async def test_bad_bodies_are_400_and_change_nothing(
    client: httpx.AsyncClient, rp: str, body: object
) -> None:
    response = await client.put(TRAITS, json=body)
    assert response.status_code == 400
    assert (await client.get(TRAITS)).json() == {"traits": [], "resource_provider_generation": 0}


async def test_delete_all_traits(client: httpx.AsyncClient, rp: str) -> None:
    await client.put(TRAITS, json={"resource_provider_generation": 0, "traits": ["HW_CPU_X86_AVX"]})
    assert (await client.delete(TRAITS)).status_code == 204
    assert (await client.get(TRAITS)).json() == {"traits": [], "resource_provider_generation": 2}
    # Nothing to remove: nothing changes, the generation stays.
    assert (await client.delete(TRAITS)).status_code == 204
    assert (await client.get(TRAITS)).json()["resource_provider_generation"] == 2


async def test_a_trait_on_a_provider_cannot_be_deleted(client: httpx.AsyncClient, rp: str) -> None:
    await client.put(
        TRAITS, json={"resource_provider_generation": 0, "traits": ["CUSTOM_HW_FPGA_CLASS1"]}
    )
    assert (await client.delete("/traits/CUSTOM_HW_FPGA_CLASS1")).status_code == 409
    associated = await client.get("/traits?associated=true")
    assert associated.json()["traits"] == ["CUSTOM_HW_FPGA_CLASS1"]


async def test_not_there_before_1_6_and_404_for_missing_provider(
    client: httpx.AsyncClient, rp: str
) -> None:
    assert (await client.get(TRAITS, headers=v("1.5"))).status_code == 404
    missing = f"/resource_providers/{MISSING}/traits"
    assert (await client.get(missing)).status_code == 404
    assert (await client.delete(missing)).status_code == 404
    put = await client.put(missing, json={"resource_provider_generation": 0, "traits": []})
    assert put.status_code == 404


async def test_deleting_the_provider_removes_its_traits(client: httpx.AsyncClient, rp: str) -> None:
    await client.put(
        TRAITS, json={"resource_provider_generation": 0, "traits": ["CUSTOM_HW_FPGA_CLASS1"]}
    )
    assert (await client.delete(f"/resource_providers/{RP}")).status_code == 204
    assert (await client.delete("/traits/CUSTOM_HW_FPGA_CLASS1")).status_code == 204
