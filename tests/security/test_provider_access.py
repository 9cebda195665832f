"""Who may read and change providers, inventories, traits, aggregates and provider usages.

Profile `tenant` (DESIGN section 6): a provider is shared (no owner) or owned by a project.
Members and readers see shared providers and their own project's; a provider they may not see
answers exactly like a missing one (404). Members change only their own project's providers
(403 for a visible shared one). Admin and service do anything; the system reader reads all.

Profile `placement`: Placement's own defaults, admin and service only.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.conftest import PROJECT_A, PROJECT_B, AppFactory, auth, make_client

AGG = "42896e0d-205d-4fe3-bd1e-100924931787"
SUBJECTS = ("admin", "service", "system_reader", "member_a", "reader_a", "member_b", "no_role")
TARGETS = ("shared", "owned_a", "owned_b")
OWNERS = {"shared": None, "owned_a": PROJECT_A, "owned_b": PROJECT_B}

Op = Callable[[httpx.AsyncClient, str, int], Awaitable[httpx.Response]]


def _url(uuid: str, tail: str = "") -> str:
    return f"/resource_providers/{uuid}{tail}"


READS: dict[str, Op] = {
    "show provider": lambda c, u, g: c.get(_url(u)),
    "list inventories": lambda c, u, g: c.get(_url(u, "/inventories")),
    "show inventory": lambda c, u, g: c.get(_url(u, "/inventories/VCPU")),
    "list aggregates": lambda c, u, g: c.get(_url(u, "/aggregates")),
    "list traits": lambda c, u, g: c.get(_url(u, "/traits")),
    "show usages": lambda c, u, g: c.get(_url(u, "/usages")),
}

WRITES: dict[str, Op] = {
    "update provider": lambda c, u, g: c.put(_url(u), json={"name": f"renamed-{u}"}),
    "delete provider": lambda c, u, g: c.delete(_url(u)),
    "replace inventories": lambda c, u, g: c.put(
        _url(u, "/inventories"),
        json={"resource_provider_generation": g, "inventories": {"VCPU": {"total": 8}}},
    ),
    "create inventory": lambda c, u, g: c.post(
        _url(u, "/inventories"), json={"resource_class": "DISK_GB", "total": 10}
    ),
    "update inventory": lambda c, u, g: c.put(
        _url(u, "/inventories/VCPU"), json={"resource_provider_generation": g, "total": 6}
    ),
    "delete inventory": lambda c, u, g: c.delete(_url(u, "/inventories/VCPU")),
    "delete inventories": lambda c, u, g: c.delete(_url(u, "/inventories")),
    "set aggregates": lambda c, u, g: c.put(
        _url(u, "/aggregates"), json={"aggregates": [AGG], "resource_provider_generation": g}
    ),
    "set traits": lambda c, u, g: c.put(
        _url(u, "/traits"), json={"traits": ["HW_CPU_X86_AVX"], "resource_provider_generation": g}
    ),
    "delete traits": lambda c, u, g: c.delete(_url(u, "/traits")),
}

WRITE_ORDER = (
    "update provider",
    "replace inventories",
    "update inventory",
    "create inventory",
    "set aggregates",
    "set traits",
    "delete traits",
    "delete inventory",
    "delete inventories",
    "delete provider",
)
assert sorted(WRITE_ORDER) == sorted(WRITES)

# What each caller gets from a read of each kind of provider.
READ_STATUS = {
    "admin": {"shared": 200, "owned_a": 200, "owned_b": 200},
    "service": {"shared": 200, "owned_a": 200, "owned_b": 200},
    "system_reader": {"shared": 200, "owned_a": 200, "owned_b": 200},
    "member_a": {"shared": 200, "owned_a": 200, "owned_b": 404},
    "reader_a": {"shared": 200, "owned_a": 200, "owned_b": 404},
    "member_b": {"shared": 200, "owned_a": 404, "owned_b": 200},
    "no_role": {"shared": 403, "owned_a": 403, "owned_b": 403},
}

# ... and from a write: "ok" is the route's success status.
WRITE_STATUS: dict[str, dict[str, int | str]] = {
    "admin": {"shared": "ok", "owned_a": "ok", "owned_b": "ok"},
    "service": {"shared": "ok", "owned_a": "ok", "owned_b": "ok"},
    "system_reader": {"shared": 403, "owned_a": 403, "owned_b": 403},
    "member_a": {"shared": 403, "owned_a": "ok", "owned_b": 404},
    "reader_a": {"shared": 403, "owned_a": 403, "owned_b": 403},
    "member_b": {"shared": 403, "owned_a": 404, "owned_b": "ok"},
    "no_role": {"shared": 403, "owned_a": 403, "owned_b": 403},
}


async def _make_targets(admin: httpx.AsyncClient) -> dict[str, str]:
    """One provider of each kind, with a VCPU inventory, made by the admin."""
    made = {}
    for target in TARGETS:
        body: dict[str, Any] = {"name": target}
        if OWNERS[target]:
            body["owner_project_id"] = OWNERS[target]
        created = await admin.post("/resource_providers", json=body)
        assert created.status_code == 200
        uuid = created.json()["uuid"]
        put = await admin.put(
            _url(uuid, "/inventories"),
            json={"resource_provider_generation": 0, "inventories": {"VCPU": {"total": 4}}},
        )
        assert put.status_code == 200
        made[target] = uuid
    return made


async def _generation(admin: httpx.AsyncClient, uuid: str) -> int:
    response = await admin.get(_url(uuid))
    assert response.status_code == 200
    generation: int = response.json()["generation"]
    return generation


async def _snapshot(admin: httpx.AsyncClient, uuid: str) -> list[Any]:
    return [
        (await admin.get(_url(uuid, tail))).json()
        for tail in ("", "/inventories", "/traits", "/aggregates")
    ]


@pytest.mark.parametrize("who", SUBJECTS)
async def test_tenant_reads(
    app: FastAPI, client: httpx.AsyncClient, as_: Callable[..., dict[str, str]], who: str
) -> None:
    targets = await _make_targets(client)
    async with make_client(app, as_(who)) as caller:
        for operation, read in sorted(READS.items()):
            for target, uuid in targets.items():
                response = await read(caller, uuid, 1)
                expected = READ_STATUS[who][target]
                assert response.status_code == expected, (operation, target, response.text)


@pytest.mark.parametrize("who", SUBJECTS)
async def test_tenant_writes(
    app: FastAPI, client: httpx.AsyncClient, as_: Callable[..., dict[str, str]], who: str
) -> None:
    targets = await _make_targets(client)
    async with make_client(app, as_(who)) as caller:
        # Destructive last, so each allowed operation finds what it works on.
        for operation in WRITE_ORDER:
            for target, uuid in targets.items():
                before = await _snapshot(client, uuid)
                response = await WRITES[operation](caller, uuid, await _generation(client, uuid))
                expected = WRITE_STATUS[who][target]
                if expected == "ok":
                    assert response.status_code in (200, 201, 204), (operation, target)
                else:
                    assert response.status_code == expected, (operation, target, response.text)
                    assert await _snapshot(client, uuid) == before


@pytest.mark.parametrize(
    ("who", "visible"),
    [
        ("admin", {"shared", "owned_a", "owned_b"}),
        ("service", {"shared", "owned_a", "owned_b"}),
        ("system_reader", {"shared", "owned_a", "owned_b"}),
        ("member_a", {"shared", "owned_a"}),
        ("reader_a", {"shared", "owned_a"}),
        ("member_b", {"shared", "owned_b"}),
    ],
)
async def test_lists_show_only_visible_providers(
    client: httpx.AsyncClient, as_: Callable[..., dict[str, str]], who: str, visible: set[str]
) -> None:
    targets = await _make_targets(client)
    headers = as_(who)
    listed = await client.get("/resource_providers", headers=headers)
    assert {p["name"] for p in listed.json()["resource_providers"]} == visible
    for target, uuid in targets.items():
        for query in (f"uuid={uuid}", f"in_tree={uuid}", "resources=VCPU:1&name=" + target):
            found = await client.get(f"/resource_providers?{query}", headers=headers)
            names = [p["name"] for p in found.json()["resource_providers"]]
            assert names == ([target] if target in visible else []), query


async def test_no_role_cannot_list(
    client: httpx.AsyncClient, as_: Callable[..., dict[str, str]]
) -> None:
    response = await client.get("/resource_providers", headers=as_("no_role"))
    assert response.status_code == 403
    assert response.json()["errors"][0]["code"] == "allot.auth.forbidden"


async def test_owner_is_shown_only_when_set(client: httpx.AsyncClient) -> None:
    targets = await _make_targets(client)
    shared = (await client.get(_url(targets["shared"]))).json()
    assert "owner_project_id" not in shared
    owned = (await client.get(_url(targets["owned_a"]))).json()
    assert owned["owner_project_id"] == PROJECT_A


@pytest.mark.parametrize(
    ("who", "body", "status", "owner"),
    [
        ("admin", {}, 200, None),
        ("admin", {"owner_project_id": PROJECT_B}, 200, PROJECT_B),
        ("service", {"owner_project_id": PROJECT_A}, 200, PROJECT_A),
        ("member_a", {}, 200, PROJECT_A),
        ("member_a", {"owner_project_id": PROJECT_A}, 200, PROJECT_A),
        ("member_a", {"owner_project_id": PROJECT_B}, 403, None),
        ("member_a", {"owner_project_id": None}, 403, None),
        ("reader_a", {}, 403, None),
        ("system_reader", {}, 403, None),
        ("no_role", {}, 403, None),
    ],
)
async def test_create_and_its_owner(
    client: httpx.AsyncClient,
    as_: Callable[..., dict[str, str]],
    who: str,
    body: dict[str, Any],
    status: int,
    owner: str | None,
) -> None:
    response = await client.post(
        "/resource_providers", json={"name": "new", **body}, headers=as_(who)
    )
    assert response.status_code == status, response.text
    listed = (await client.get("/resource_providers")).json()["resource_providers"]
    if status != 200:
        assert listed == []
        return
    assert response.json().get("owner_project_id") == owner
    assert [p.get("owner_project_id") for p in listed] == [owner]


async def test_members_hang_children_only_under_their_own_providers(
    client: httpx.AsyncClient, as_: Callable[..., dict[str, str]]
) -> None:
    targets = await _make_targets(client)
    member = as_("member_a")
    expected = {"owned_a": 200, "shared": 403, "owned_b": 400}
    for target, status in expected.items():
        response = await client.post(
            "/resource_providers",
            json={"name": f"child-of-{target}", "parent_provider_uuid": targets[target]},
            headers=member,
        )
        assert response.status_code == status, target
    child = await client.get("/resource_providers?name=child-of-owned_a")
    [shown] = child.json()["resource_providers"]
    assert shown["owner_project_id"] == PROJECT_A
    assert shown["root_provider_uuid"] == targets["owned_a"]


async def test_members_cannot_give_providers_away(
    client: httpx.AsyncClient, as_: Callable[..., dict[str, str]]
) -> None:
    targets = await _make_targets(client)
    uuid = targets["owned_a"]
    for owner in (PROJECT_B, None):
        response = await client.put(
            _url(uuid), json={"name": "owned_a", "owner_project_id": owner}, headers=as_("member_a")
        )
        assert response.status_code == 403
    assert (await client.get(_url(uuid))).json()["owner_project_id"] == PROJECT_A
    moved = await client.put(_url(uuid), json={"name": "owned_a", "owner_project_id": PROJECT_B})
    assert moved.status_code == 200
    assert moved.json()["owner_project_id"] == PROJECT_B
    gone = await client.get(_url(uuid), headers=as_("member_a"))
    assert gone.status_code == 404


@pytest.mark.parametrize(
    ("who", "allowed"),
    [
        ("admin", True),
        ("service", True),
        ("system_reader", False),
        ("member_a", False),
        ("reader_a", False),
        ("no_role", False),
    ],
)
async def test_placement_profile_is_admin_and_service_only(
    app_factory: AppFactory, tokens: dict[str, str], who: str, allowed: bool
) -> None:
    headers = {**auth(tokens[who]), "openstack-api-version": "placement latest"}
    admin_headers = {**auth(tokens["admin"]), "openstack-api-version": "placement latest"}
    async with (
        app_factory(policy="placement") as placement_app,
        make_client(placement_app, admin_headers) as admin,
        make_client(placement_app, headers) as caller,
    ):
        uuid = (await _make_targets(admin))["owned_a"]
        listed = await caller.get("/resource_providers")
        created = await caller.post("/resource_providers", json={"name": "by-caller"})
        for name, op in sorted(READS.items()):
            response = await op(caller, uuid, 1)
            assert response.status_code == (200 if allowed else 403), name
        # Destructive last, so each operation finds what it works on.
        for name in WRITE_ORDER:
            before = await _snapshot(admin, uuid)
            response = await WRITES[name](caller, uuid, await _generation(admin, uuid))
            if allowed:
                assert response.status_code in (200, 201, 204), name
            else:
                assert response.status_code == 403, name
                assert await _snapshot(admin, uuid) == before
    assert listed.status_code == (200 if allowed else 403)
    assert created.status_code == (200 if allowed else 403)
