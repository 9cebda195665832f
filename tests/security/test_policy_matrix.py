"""Who may do what to resource classes and traits, under both shipped policy profiles.

DESIGN section 6: `tenant` lets every project role read the shared vocabulary and only admin
and service change it; `placement` reproduces Placement's defaults (project-scoped admin or
service for everything here, system-scoped tokens nothing).
"""

from __future__ import annotations

import json

import httpx
import pytest
from fastapi import FastAPI

from tests.conftest import LOG_LINES, AppFactory, auth, make_client, mint

READS = (
    "GET /resource_classes",
    "GET /resource_classes/VCPU",
    "GET /traits",
    "GET /traits/HW_CPU_X86_AVX",
)
# In this order, with the status an allowed caller gets.
WRITES = {
    "POST /resource_classes": 201,
    "PUT /resource_classes/{custom}": 204,  # already there: ensured (1.7+)
    "DELETE /resource_classes/{custom}": 204,
    "PUT /traits/{custom}": 201,
    "DELETE /traits/{custom}": 204,
}
CALLERS = ("admin", "system_admin", "service", "system_reader", "member_a", "reader_a", "no_role")

# caller -> (may read, may write)
TENANT = {
    "admin": (True, True),
    "system_admin": (True, True),
    "service": (True, True),
    "system_reader": (True, False),
    "member_a": (True, False),
    "reader_a": (True, False),
    "no_role": (False, False),
}
PLACEMENT = {
    "admin": (True, True),
    "system_admin": (False, False),
    "service": (True, True),
    "system_reader": (False, False),
    "member_a": (False, False),
    "reader_a": (False, False),
    "no_role": (False, False),
}


def _headers(tokens: dict[str, str], who: str) -> dict[str, str]:
    token = (
        mint(roles=["admin"], system=True, user="root") if who == "system_admin" else tokens[who]
    )
    return {**auth(token), "openstack-api-version": "placement latest"}


async def _request(c: httpx.AsyncClient, route: str, custom: str) -> httpx.Response:
    method, path = route.split(" ")
    path = path.format(custom=custom)
    body = {"name": custom} if method == "POST" else None
    return await c.request(method, path, json=body)


async def _check(app: FastAPI, tokens: dict[str, str], who: str, may: tuple[bool, bool]) -> None:
    may_read, may_write = may
    custom = f"CUSTOM_{who.upper()}"
    async with make_client(app, _headers(tokens, who)) as c:
        for route in READS:
            response = await _request(c, route, custom)
            found = 204 if route.startswith("GET /traits/") else 200  # a trait shows as 204
            expected = found if may_read else 403
            assert response.status_code == expected, (who, route, response.status_code)
        for route, done in WRITES.items():
            response = await _request(c, route, custom)
            expected = done if may_write else 403
            assert response.status_code == expected, (who, route, response.status_code)
            if not may_write:
                assert response.json()["errors"][0]["code"] == "allot.auth.forbidden"
    # A refused write left nothing behind.
    async with make_client(app, _headers(tokens, "admin")) as admin:
        assert (await admin.get(f"/resource_classes/{custom}")).status_code == 404
        assert (await admin.get(f"/traits/{custom}")).status_code == 404


@pytest.mark.parametrize("who", CALLERS)
async def test_tenant_profile(app: FastAPI, tokens: dict[str, str], who: str) -> None:
    await _check(app, tokens, who, TENANT[who])


@pytest.mark.parametrize("who", CALLERS)
async def test_placement_profile(app_factory: AppFactory, tokens: dict[str, str], who: str) -> None:
    async with app_factory(policy="placement") as placement:
        await _check(placement, tokens, who, PLACEMENT[who])


async def test_denials_are_logged_with_subject_action_and_rule(
    app: FastAPI, tokens: dict[str, str]
) -> None:
    async with make_client(app, _headers(tokens, "member_a")) as c:
        denied = await c.post("/resource_classes", json={"name": "CUSTOM_NOPE"})
    assert denied.status_code == 403
    request_id = denied.json()["errors"][0]["request_id"]
    lines = [json.loads(line) for line in LOG_LINES if request_id in line]
    denial = next(line for line in lines if line.get("message") == "denied")
    assert denial["action"] == "resource_classes:write"
    assert denial["subject"] == "alice"
    assert "no rule allows resource_classes:write" in denial["rule"]
