"""POST /reshaper (1.30+): move inventory and the allocations on it to a child, atomically."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.allocation_helpers import (
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

DISK = {"total": 2048, "step_size": 10, "min_unit": 10, "max_unit": 1200}


@dataclass
class Tree:
    root: str
    child: str
    disk: str  # a consumer of 1000 DISK_GB on the root
    cpu: str  # 6 VCPU on the root
    both: str  # 1 VCPU + 20 DISK_GB on the root, another user


@pytest.fixture
async def tree(client: httpx.AsyncClient) -> Tree:
    root = await make_provider(client, {"DISK_GB": DISK, "VCPU": {"total": 10, "max_unit": 8}})
    disk, cpu, both = new_uuid(), new_uuid(), new_uuid()
    for consumer, resources, user in (
        (disk, {"DISK_GB": 1000}, USER),
        (cpu, {"VCPU": 6}, USER),
        (both, {"VCPU": 1, "DISK_GB": 20}, OTHER_USER),
    ):
        put = await client.put(f"/allocations/{consumer}", json=body({root: resources}, user=user))
        assert put.status_code == 204
    child = await make_provider(client, parent=root)
    return Tree(root, child, disk, cpu, both)


def consumer(
    allocations: dict[str, dict[str, int]], generation: int | None, user: str = USER
) -> dict[str, Any]:
    return body(allocations, generation=generation, user=user)


def move_vcpu_to_child(t: Tree, root_generation: int = 4) -> dict[str, Any]:
    return {
        "inventories": {
            t.root: {
                "resource_provider_generation": root_generation,
                "inventories": {"DISK_GB": DISK},
            },
            t.child: {
                "resource_provider_generation": 0,
                "inventories": {"VCPU": {"total": 10, "max_unit": 8}},
            },
        },
        "allocations": {
            t.disk: consumer({t.root: {"DISK_GB": 1000}}, 1),
            t.cpu: consumer({t.child: {"VCPU": 6}}, 1),
            t.both: consumer({t.root: {"DISK_GB": 20}, t.child: {"VCPU": 1}}, 1, OTHER_USER),
        },
    }


async def usages_of(client: httpx.AsyncClient, rp: str) -> dict[str, Any]:
    result: dict[str, Any] = (await client.get(f"/resource_providers/{rp}/usages")).json()
    return result


async def test_post_only_admin_only_from_1_30(
    client: httpx.AsyncClient, as_: Any, tree: Tree
) -> None:
    assert (await client.get("/reshaper")).status_code == 405
    assert (await client.post("/reshaper", json={}, headers=v("1.29"))).status_code == 404
    member = await client.post("/reshaper", json=move_vcpu_to_child(tree), headers=as_("member_a"))
    assert member.status_code == 403


async def test_moves_inventory_and_allocations_to_a_child(
    client: httpx.AsyncClient, tree: Tree
) -> None:
    assert await generation_of(client, tree.root) == 4
    response = await client.post("/reshaper", json=move_vcpu_to_child(tree))
    assert response.status_code == 204, response.text
    # Generations move as in Placement: interim and final inventory, then the allocations.
    assert await usages_of(client, tree.root) == {
        "resource_provider_generation": 7,
        "usages": {"DISK_GB": 1020},
    }
    assert await usages_of(client, tree.child) == {
        "resource_provider_generation": 3,
        "usages": {"VCPU": 7},
    }
    shown = (await client.get(f"/allocations/{tree.both}")).json()
    assert shown["consumer_generation"] == 2
    assert shown["allocations"][tree.child]["resources"] == {"VCPU": 1}

    # And back, with new consumers and one released.
    a, b = new_uuid(), new_uuid()
    back = {
        "inventories": {
            tree.root: {
                "resource_provider_generation": 7,
                "inventories": {"DISK_GB": DISK, "VCPU": {"total": 10, "max_unit": 8}},
            },
            tree.child: {"resource_provider_generation": 3, "inventories": {}},
        },
        "allocations": {
            tree.disk: consumer({tree.root: {"DISK_GB": 1000}}, 2),
            a: consumer({tree.root: {"VCPU": 6}}, None),
            b: consumer({tree.root: {"DISK_GB": 20, "VCPU": 1}}, None, OTHER_USER),
            tree.cpu: consumer({}, 2),
            tree.both: consumer({}, 2, OTHER_USER),
        },
    }
    assert (await client.post("/reshaper", json=back)).status_code == 204
    assert await usages_of(client, tree.root) == {
        "resource_provider_generation": 10,
        "usages": {"DISK_GB": 1020, "VCPU": 7},
    }
    assert await usages_of(client, tree.child) == {
        "resource_provider_generation": 5,
        "usages": {},
    }
    assert (await client.get(f"/allocations/{tree.cpu}")).json() == {"allocations": {}}


def _mutate(t: Tree, change: str) -> dict[str, Any]:
    document = move_vcpu_to_child(t)
    inventories, allocations = document["inventories"], document["allocations"]
    if change == "unknown provider":
        inventories[new_uuid()] = inventories.pop(t.child)
    elif change == "bad inventory field":
        inventories[t.root]["inventories"]["DISK_GB"] = {**DISK, "bad_field": "moo"}
    elif change == "bad allocation field":
        allocations[t.disk]["bad_field"] = "moo"
    elif change == "unknown class":
        inventories[t.root]["inventories"] = {"DISK_OF_STEEL": DISK}
    elif change == "max_unit violated":
        inventories[t.root]["inventories"]["DISK_GB"] = {**DISK, "max_unit": 600}
    elif change == "stale provider generation":
        inventories[t.root]["resource_provider_generation"] = 3
    elif change == "stale consumer generation":
        allocations[t.cpu]["consumer_generation"] = 99
    elif change == "no allocations key":
        del document["allocations"]
    elif change == "no inventories":
        document["inventories"] = {}
    elif change == "class in use removed":
        # DISK_GB goes from the root while consumers this reshape leaves alone still use it.
        inventories[t.root]["inventories"] = {"VCPU": {"total": 10, "max_unit": 8}}
        del allocations[t.disk], allocations[t.both]
    elif change == "no consumer type":
        del allocations[t.disk]["consumer_type"]
    return document


REJECTIONS = {
    "unknown provider": (400, "placement.resource_provider.not_found"),
    "bad inventory field": (400, "allot.validation"),
    "bad allocation field": (400, "allot.validation"),
    "unknown class": (400, None),
    "max_unit violated": (409, None),
    "stale provider generation": (409, "placement.concurrent_update"),
    "stale consumer generation": (409, "placement.concurrent_update"),
    "no allocations key": (400, "allot.validation"),
    "no inventories": (400, "allot.validation"),
    "class in use removed": (409, "placement.inventory.inuse"),
    "no consumer type": (400, "allot.validation"),
}


@pytest.mark.parametrize("change", list(REJECTIONS))
async def test_a_rejected_reshape_changes_nothing(
    client: httpx.AsyncClient, tree: Tree, app: FastAPI, change: str
) -> None:
    before = await snapshot(app)
    response = await client.post("/reshaper", json=_mutate(tree, change))
    status, code = REJECTIONS[change]
    assert response.status_code == status, response.text
    if code:
        assert response.json()["errors"][0]["code"] == code
    assert await snapshot(app) == before
    # The same reshape, unchanged, still works afterwards: nothing half-applied got in the way.
    assert (await client.post("/reshaper", json=move_vcpu_to_child(tree))).status_code == 204


async def test_versions_gate_mappings_and_consumer_types(
    client: httpx.AsyncClient, tree: Tree
) -> None:
    document = move_vcpu_to_child(tree)
    for entry in document["allocations"].values():
        del entry["consumer_type"]
    document["allocations"][tree.disk]["mappings"] = {"": [tree.root]}
    assert (await client.post("/reshaper", json=document, headers=v("1.33"))).status_code == 400
    assert (await client.post("/reshaper", json=document, headers=v("1.34"))).status_code == 204
    assert (await client.get(f"/allocations/{tree.disk}")).json()["project_id"] == PROJECT
