"""/traits: standard traits from os-traits, CUSTOM_ traits managed by admins."""

from __future__ import annotations

import httpx
import os_traits
import pytest


async def test_lists_standard_traits(client: httpx.AsyncClient) -> None:
    traits = (await client.get("/traits")).json()["traits"]
    assert set(traits) == set(os_traits.get_traits())


async def test_create_is_idempotent_and_filters_find_it(client: httpx.AsyncClient) -> None:
    created = await client.put("/traits/CUSTOM_FAST")
    assert created.status_code == 201
    assert created.headers["location"] == "http://allot.test/traits/CUSTOM_FAST"
    assert "content-type" not in created.headers
    again = await client.put("/traits/CUSTOM_FAST")
    assert again.status_code == 204
    assert again.headers["location"] == created.headers["location"]
    assert (await client.get("/traits/CUSTOM_FAST")).status_code == 204
    custom = await client.get("/traits", params={"name": "startswith:CUSTOM"})
    assert custom.json() == {"traits": ["CUSTOM_FAST"]}
    chosen = await client.get("/traits", params={"name": "in:CUSTOM_FAST,HW_CPU_X86_AVX,NOPE"})
    assert chosen.json() == {"traits": ["CUSTOM_FAST", "HW_CPU_X86_AVX"]}
    unassociated = await client.get(
        "/traits", params={"associated": "false", "name": "startswith:CUSTOM"}
    )
    assert unassociated.json() == {"traits": ["CUSTOM_FAST"]}


@pytest.mark.parametrize("name", ["TRAIT_X", "CUSTOM_ABC:1", "CUSTOM_" + "A" * 250])
async def test_invalid_names_are_400(client: httpx.AsyncClient, name: str) -> None:
    assert (await client.put(f"/traits/{name}")).status_code == 400


@pytest.mark.parametrize(
    "params",
    [{"name": "CUSTOM_FAST"}, {"associated": "maybe"}, {"colour": "blue"}],
)
async def test_bad_queries_are_400(client: httpx.AsyncClient, params: dict[str, str]) -> None:
    assert (await client.get("/traits", params=params)).status_code == 400


async def test_repeated_query_parameter_is_duplicate_key(client: httpx.AsyncClient) -> None:
    response = await client.get("/traits?associated=true&associated=false")
    assert response.status_code == 400
    assert response.json()["errors"][0]["code"] == "placement.query.duplicate_key"


async def test_delete(client: httpx.AsyncClient) -> None:
    await client.put("/traits/CUSTOM_GONE")
    assert (await client.delete("/traits/CUSTOM_GONE")).status_code == 204
    assert (await client.get("/traits/CUSTOM_GONE")).status_code == 404
    assert (await client.delete("/traits/CUSTOM_GONE")).status_code == 404
    assert (await client.delete("/traits/HW_CPU_X86_SSE")).status_code == 400


async def test_not_there_before_1_6(client: httpx.AsyncClient) -> None:
    v15 = {"openstack-api-version": "placement 1.5"}
    assert (await client.get("/traits", headers=v15)).status_code == 404
    assert (await client.put("/traits/CUSTOM_A", headers=v15)).status_code == 404


async def test_put_has_cache_headers_from_1_15(client: httpx.AsyncClient) -> None:
    for version in ("1.15", "1.14"):
        for expected in (201, 204):
            response = await client.put(
                f"/traits/CUSTOM_V{version[2:]}",
                headers={"openstack-api-version": f"placement {version}"},
            )
            assert response.status_code == expected
            if version == "1.15":
                assert response.headers["cache-control"] == "no-cache"
                assert response.headers["last-modified"].endswith(" GMT")
            else:
                assert "last-modified" not in response.headers
