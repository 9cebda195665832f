"""GET /resource_providers/{uuid}/allocations: every consumer's allocations on one provider."""

from __future__ import annotations

import httpx

from tests.allocation_helpers import body, make_provider, new_uuid, v


async def test_unknown_provider_is_404(client: httpx.AsyncClient) -> None:
    response = await client.get(f"/resource_providers/{new_uuid()}/allocations")
    assert response.status_code == 404


async def test_no_allocations(client: httpx.AsyncClient) -> None:
    rp = await make_provider(client, {"VCPU": {"total": 4}})
    response = await client.get(f"/resource_providers/{rp}/allocations")
    assert response.json() == {"allocations": {}, "resource_provider_generation": 1}


async def test_lists_each_consumer_with_its_generation_from_1_28(
    client: httpx.AsyncClient,
) -> None:
    rp = await make_provider(client, {"VCPU": {"total": 8}, "MEMORY_MB": {"total": 2048}})
    a, b = new_uuid(), new_uuid()
    await client.put(f"/allocations/{a}", json=body({rp: {"VCPU": 1, "MEMORY_MB": 256}}))
    await client.put(f"/allocations/{b}", json=body({rp: {"VCPU": 2}}))
    latest = await client.get(f"/resource_providers/{rp}/allocations")
    assert latest.json() == {
        "allocations": {
            a: {"resources": {"VCPU": 1, "MEMORY_MB": 256}, "consumer_generation": 1},
            b: {"resources": {"VCPU": 2}, "consumer_generation": 1},
        },
        "resource_provider_generation": 3,
    }
    assert latest.headers["cache-control"] == "no-cache"
    old = await client.get(f"/resource_providers/{rp}/allocations", headers=v("1.27"))
    assert old.json()["allocations"][b] == {"resources": {"VCPU": 2}}
    oldest = await client.get(f"/resource_providers/{rp}/allocations", headers=v("1.14"))
    assert "cache-control" not in oldest.headers and "last-modified" not in oldest.headers
