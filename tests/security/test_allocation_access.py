"""Who may read and write which allocations: the tenant and placement role matrices
(DESIGN section 6) for /allocations, /resource_providers/{uuid}/allocations, /usages and
/reshaper. Every refused write leaves the database exactly as it was."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.allocation_helpers import body, make_provider, new_uuid, snapshot
from tests.conftest import PROJECT_A, PROJECT_B, auth, make_client

CALLERS = ["admin", "service", "system_reader", "member_a", "reader_a", "member_b", "no_role"]


@dataclass
class World:
    shared: str  # no owner: visible to every member
    owned_a: str
    owned_b: str
    consumer_a: str  # project A's, on the shared provider
    consumer_b: str  # project B's, on the shared provider
    admin: httpx.AsyncClient


async def build(admin: httpx.AsyncClient) -> World:
    inventory = {"VCPU": {"total": 100}}
    shared = await make_provider(admin, inventory)
    owned_a = await make_provider(admin, inventory, owner=PROJECT_A)
    owned_b = await make_provider(admin, inventory, owner=PROJECT_B)
    consumer_a, consumer_b = new_uuid(), new_uuid()
    for consumer, project in ((consumer_a, PROJECT_A), (consumer_b, PROJECT_B)):
        put = await admin.put(
            f"/allocations/{consumer}", json=body({shared: {"VCPU": 1}}, project=project)
        )
        assert put.status_code == 204
    return World(shared, owned_a, owned_b, consumer_a, consumer_b, admin)


Op = Callable[[httpx.AsyncClient, World], Awaitable[httpx.Response]]

READS: dict[str, Op] = {
    "consumer A": lambda c, w: c.get(f"/allocations/{w.consumer_a}"),
    "provider A's allocations": lambda c, w: c.get(f"/resource_providers/{w.owned_a}/allocations"),
    "shared provider's allocations": lambda c, w: c.get(
        f"/resource_providers/{w.shared}/allocations"
    ),
    "usages A": lambda c, w: c.get(f"/usages?project_id={PROJECT_A}"),
}

# Status per caller, in CALLERS order. "{}" = 200 with the empty result of an unknown consumer.
TENANT_READS: dict[str, list[Any]] = {
    "consumer A": [200, 200, 200, 200, 200, "{}", 403],
    "provider A's allocations": [200, 200, 200, 200, 200, 404, 403],
    "shared provider's allocations": [200, 200, 200, 403, 403, 403, 403],
    "usages A": [200, 200, 200, 200, 200, 403, 403],
}


def _new_for(project: str, rp: Callable[[World], str]) -> Op:
    return lambda c, w: c.put(
        f"/allocations/{new_uuid()}", json=body({rp(w): {"VCPU": 1}}, project=project)
    )


WRITES: dict[str, Op] = {
    "new A consumer on shared": _new_for(PROJECT_A, lambda w: w.shared),
    "new A consumer on A's provider": _new_for(PROJECT_A, lambda w: w.owned_a),
    "new B consumer on A's provider": _new_for(PROJECT_B, lambda w: w.owned_a),
    "replace consumer B": lambda c, w: c.put(
        f"/allocations/{w.consumer_b}",
        json=body({w.shared: {"VCPU": 2}}, project=PROJECT_B, generation=1),
    ),
    "take over consumer B": lambda c, w: c.put(
        f"/allocations/{w.consumer_b}",
        json=body({w.shared: {"VCPU": 2}}, project=PROJECT_A, generation=1),
    ),
    "post own and other project's": lambda c, w: c.post(
        "/allocations",
        json={
            new_uuid(): body({w.shared: {"VCPU": 1}}, project=PROJECT_A),
            new_uuid(): body({w.shared: {"VCPU": 1}}, project=PROJECT_B),
        },
    ),
    "delete consumer B": lambda c, w: c.delete(f"/allocations/{w.consumer_b}"),
    "reshape shared": lambda c, w: _reshape(c, w),
}


async def _reshape(caller: httpx.AsyncClient, w: World) -> httpx.Response:
    generation = (await w.admin.get(f"/resource_providers/{w.shared}")).json()["generation"]
    inventory = {"resource_provider_generation": generation, "inventories": {"VCPU": {"total": 99}}}
    return await caller.post(
        "/reshaper", json={"inventories": {w.shared: inventory}, "allocations": {}}
    )


TENANT_WRITES: dict[str, list[int]] = {
    "new A consumer on shared": [204, 204, 403, 204, 403, 403, 403],
    # A's provider is invisible to B's member: as unknown as a provider that does not exist.
    "new A consumer on A's provider": [204, 204, 403, 204, 403, 403, 403],
    "new B consumer on A's provider": [204, 204, 403, 403, 403, 400, 403],
    "replace consumer B": [204, 204, 403, 403, 403, 204, 403],
    "take over consumer B": [204, 204, 403, 403, 403, 403, 403],
    "post own and other project's": [204, 204, 403, 403, 403, 403, 403],
    "delete consumer B": [204, 204, 403, 403, 403, 204, 403],
    "reshape shared": [204, 204, 403, 403, 403, 403, 403],
}


def _check(response: httpx.Response, expected: Any, what: str) -> None:
    if expected == "{}":
        assert response.status_code == 200, what
        assert response.json() == {"allocations": {}}, what
    else:
        assert response.status_code == expected, f"{what}: {response.text}"


@pytest.mark.parametrize("who", CALLERS)
async def test_tenant_reads(
    app: FastAPI, client: httpx.AsyncClient, as_: Callable[..., dict[str, str]], who: str
) -> None:
    world = await build(client)
    async with make_client(app, as_(who)) as caller:
        for name, op in READS.items():
            _check(await op(caller, world), TENANT_READS[name][CALLERS.index(who)], name)


@pytest.mark.parametrize("who", CALLERS)
@pytest.mark.parametrize("write", list(WRITES))
async def test_tenant_writes(
    app: FastAPI,
    client: httpx.AsyncClient,
    as_: Callable[..., dict[str, str]],
    who: str,
    write: str,
) -> None:
    world = await build(client)
    expected = TENANT_WRITES[write][CALLERS.index(who)]
    before = await snapshot(app)
    async with make_client(app, as_(who)) as caller:
        response = await WRITES[write](caller, world)
    _check(response, expected, write)
    if expected >= 400:
        assert await snapshot(app) == before


async def test_a_member_reads_only_its_own_consumers_allocations(
    client: httpx.AsyncClient, as_: Callable[..., dict[str, str]]
) -> None:
    world = await build(client)
    mine = await client.get(f"/allocations/{world.consumer_a}", headers=as_("member_a"))
    assert mine.json()["project_id"] == PROJECT_A
    theirs = await client.get(f"/allocations/{world.consumer_b}", headers=as_("member_a"))
    assert theirs.json() == {"allocations": {}}
    assert (await client.get(f"/allocations/{new_uuid()}", headers=as_("member_a"))).json() == {
        "allocations": {}
    }


# --- the placement profile: admin and service only, plus readers of their own usages ---

PLACEMENT_READS: dict[str, list[Any]] = {
    "consumer A": [200, 200, 403, 403, 403, 403, 403],
    "provider A's allocations": [200, 200, 403, 403, 403, 403, 403],
    "shared provider's allocations": [200, 200, 403, 403, 403, 403, 403],
    "usages A": [200, 200, 403, 200, 200, 403, 403],
}


@pytest.mark.parametrize("who", CALLERS)
async def test_placement_profile(app_factory: Any, tokens: dict[str, str], who: str) -> None:
    version = {"openstack-api-version": "placement latest"}
    async with (
        app_factory(policy="placement") as placement_app,
        make_client(placement_app, {**auth(tokens["admin"]), **version}) as admin,
        make_client(placement_app, {**auth(tokens[who]), **version}) as caller,
    ):
        world = await build(admin)
        for name, op in READS.items():
            _check(await op(caller, world), PLACEMENT_READS[name][CALLERS.index(who)], name)
        allowed = who in ("admin", "service")
        for name in ("new A consumer on shared", "post own and other project's", "reshape shared"):
            # Placement lets only the service reshape, not even an admin.
            may = who == "service" if name == "reshape shared" else allowed
            before = await snapshot(placement_app)
            response = await WRITES[name](caller, world)
            _check(response, 204 if may else 403, name)
            if not may:
                assert await snapshot(placement_app) == before
        delete = await WRITES["delete consumer B"](caller, world)
        _check(delete, 204 if allowed else 403, "delete")
