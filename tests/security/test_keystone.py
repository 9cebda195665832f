"""Keystone tokens: validated by a real Keystone, cached by hash, refused or deferred correctly.

allot runs as its own service user (the `service` role in project `service`). Every identity
here is created through Keystone's API; on both databases.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import REGISTRY

from app.authz.keystone import KeystoneAuthenticator
from app.authz.subjects import InvalidToken
from app.settings import Settings
from tests.conftest import LOG_LINES, AppFactory, make_client
from tests.keystone_server import Keystone, User

pytestmark = pytest.mark.slow

VERSION = {"openstack-api-version": "placement latest"}


def counted(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture
def keystone_app(
    app: FastAPI, app_factory: AppFactory, keystone_settings: dict[str, Any]
) -> Callable[..., Any]:
    """`async with keystone_app(**settings) as call:` an allot validating Keystone tokens;
    `await call(token, method, path, json=...)` sends a request with that token."""

    @asynccontextmanager
    async def running(**overrides: Any) -> AsyncIterator[Callable[..., Any]]:
        async with (
            app_factory(**{**keystone_settings, **overrides}) as application,
            make_client(application, VERSION) as client,
        ):

            async def call(
                token: str, method: str = "GET", path: str = "/resource_providers", **kw: Any
            ) -> httpx.Response:
                headers = {"x-auth-token": token, **kw.pop("headers", {})}
                return await client.request(method, path, headers=headers, **kw)

            yield call

    return running


def project_of(keystone: Keystone, user: User) -> str:
    assert user.project
    return keystone.project(user.project)


async def test_a_project_members_keystone_token_acts_for_that_project(
    keystone: Keystone, keystone_app: Callable[..., Any]
) -> None:
    alice = keystone.user("alice", f"proj-{uuid.uuid4().hex[:6]}", ["member"])
    async with keystone_app() as call:
        token = keystone.user_token(alice)
        created = await call(token, "POST", "/resource_providers", json={"name": "rack-1"})
        assert created.status_code == 200, created.text
        # The provider belongs to the Keystone project the token is scoped to.
        assert created.json()["owner_project_id"] == project_of(keystone, alice)
        # Keystone's token in `Authorization: Bearer` is accepted too.
        listed = await call("", headers={"authorization": f"Bearer {token}"})
        assert [p["name"] for p in listed.json()["resource_providers"]] == ["rack-1"]


async def test_keystone_users_of_two_projects_cannot_see_each_others_things(
    keystone: Keystone, keystone_app: Callable[..., Any]
) -> None:
    alice = keystone.user("alice", f"proj-a-{uuid.uuid4().hex[:6]}", ["member"])
    bob = keystone.user("bob", f"proj-b-{uuid.uuid4().hex[:6]}", ["member"])
    consumer = str(uuid.uuid4())
    async with keystone_app(policy="tenant") as call:
        a, b = keystone.user_token(alice), keystone.user_token(bob)
        provider = (await call(a, "POST", "/resource_providers", json={"name": "a-host"})).json()
        rp = provider["uuid"]
        inventory = {"resource_provider_generation": 0, "inventories": {"VCPU": {"total": 8}}}
        put = await call(a, "PUT", f"/resource_providers/{rp}/inventories", json=inventory)
        assert put.status_code == 200
        claim = {
            "allocations": {rp: {"resources": {"VCPU": 2}}},
            "project_id": project_of(keystone, alice),
            "user_id": alice.id,
            "consumer_generation": None,
            "consumer_type": "INSTANCE",
        }
        assert (await call(a, "PUT", f"/allocations/{consumer}", json=claim)).status_code == 204

        assert (await call(b)).json()["resource_providers"] == []
        assert (await call(b, "GET", f"/resource_providers/{rp}")).status_code == 404
        theirs = await call(b, "GET", f"/allocations/{consumer}")
        assert theirs.status_code == 200 and theirs.json()["allocations"] == {}
        taken = await call(b, "DELETE", f"/allocations/{consumer}")
        assert taken.status_code == 403
        mine = await call(a, "GET", f"/allocations/{consumer}")
        assert mine.json()["allocations"][rp]["resources"] == {"VCPU": 2}


async def test_placement_profile_gives_keystone_roles_what_placement_gives_them(
    keystone: Keystone, keystone_app: Callable[..., Any]
) -> None:
    project = f"proj-{uuid.uuid4().hex[:6]}"
    users = {
        role: keystone.user(role, project, [role])
        for role in ("admin", "service", "manager", "member", "reader")
    }
    async with keystone_app(policy="placement") as call:
        tokens = {role: keystone.user_token(user) for role, user in users.items()}
        own_usages = f"/usages?project_id={keystone.project(project)}"
        other_usages = f"/usages?project_id={uuid.uuid4().hex}"
        seen = {
            role: (
                (await call(token)).status_code,
                (await call(token, "GET", own_usages)).status_code,
                (await call(token, "GET", other_usages)).status_code,
                (await call(token, "POST", "/reshaper", json={})).status_code,
            )
            for role, token in tokens.items()
        }
    # (list providers, own usages, another project's usages, reshape an empty body)
    assert seen == {
        "admin": (200, 200, 200, 403),
        "service": (200, 200, 200, 400),
        "manager": (403, 200, 403, 403),
        "member": (403, 200, 403, 403),
        "reader": (403, 200, 403, 403),
    }


async def test_domain_scoped_and_unscoped_tokens_are_refused(
    keystone: Keystone, keystone_app: Callable[..., Any]
) -> None:
    admin = keystone.user("domain-admin", f"proj-{uuid.uuid4().hex[:6]}", ["admin"])
    keystone.grant_on_domain(admin, "admin")
    async with keystone_app(policy="tenant") as call:
        domain = keystone.token(admin.name, admin.password, domain="default")
        unscoped = keystone.token(admin.name, admin.password)
        for token in (domain, unscoped):
            refused = await call(token)
            assert refused.status_code == 403
            assert refused.json()["errors"][0]["code"] == "allot.auth.forbidden"
        # The same user's project-scoped token is an admin's.
        assert (await call(keystone.user_token(admin))).status_code == 200


async def test_system_scoped_tokens_follow_the_profile(
    keystone: Keystone, keystone_app: Callable[..., Any]
) -> None:
    operator = keystone.user("operator", None, [])
    keystone.grant_on_system(operator, "reader")
    token = keystone.token(operator.name, operator.password, system=True)
    async with keystone_app(policy="tenant") as call:
        assert (await call(token)).status_code == 200  # the system reader of DESIGN's matrix
        assert (
            await call(token, "POST", "/resource_providers", json={"name": "x"})
        ).status_code == 403
    async with keystone_app(policy="placement") as call:
        assert (await call(token)).status_code == 403  # Placement's rules are project-scoped


@pytest.mark.parametrize("token", ["gAAAAABgarbage-token", "not-even-base64", "a" * 9000])
async def test_a_token_keystone_does_not_know_is_401_with_keystone_challenge(
    keystone: Keystone, keystone_app: Callable[..., Any], token: str
) -> None:
    async with keystone_app() as call:
        refused = await call(token)
    assert refused.status_code == 401
    assert refused.json()["errors"][0]["code"] == "allot.auth.required"
    challenge = refused.headers["www-authenticate"]
    assert challenge.startswith(f'Keystone uri="{keystone.url}"')


async def test_concurrent_first_use_of_a_token_is_one_validation(
    keystone: Keystone, keystone_app: Callable[..., Any]
) -> None:
    carol = keystone.user("carol", f"proj-{uuid.uuid4().hex[:6]}", ["reader"])
    async with keystone_app() as call:
        token = keystone.user_token(carol)
        before = counted("allot_keystone_validations_total", result="valid")
        answers = await asyncio.gather(*(call(token, "GET", "/traits") for _ in range(20)))
        assert [a.status_code for a in answers] == [200] * 20
        assert counted("allot_keystone_validations_total", result="valid") == before + 1
        # Later requests are answered from the cache.
        hits = counted("allot_keystone_cache_hits_total", result="valid")
        assert (await call(token, "GET", "/traits")).status_code == 200
        assert counted("allot_keystone_cache_hits_total", result="valid") == hits + 1


async def test_keystone_down_cached_tokens_work_new_ones_are_503_until_it_is_back(
    keystone: Keystone, keystone_app: Callable[..., Any]
) -> None:
    dave = keystone.user("dave", f"proj-{uuid.uuid4().hex[:6]}", ["reader"])
    async with keystone_app() as call:
        known, new = keystone.user_token(dave), keystone.user_token(dave)
        assert (await call(known, "GET", "/traits")).status_code == 200
        keystone.stop()
        try:
            assert (await call(known, "GET", "/traits")).status_code == 200
            deferred = await call(new, "GET", "/traits")
            assert deferred.status_code == 503
            assert deferred.headers["retry-after"] == "5"
            assert deferred.json()["errors"][0]["code"] == "allot.unavailable"
            assert "www-authenticate" not in deferred.headers
        finally:
            keystone.start()
        assert (await call(new, "GET", "/traits")).status_code == 200


async def test_a_revoked_token_is_refused_once_the_cache_time_has_passed(
    keystone: Keystone, keystone_app: Callable[..., Any]
) -> None:
    erin = keystone.user("erin", f"proj-{uuid.uuid4().hex[:6]}", ["reader"])
    async with keystone_app(auth_keystone_cache_seconds=1) as call:
        token = keystone.user_token(erin)
        assert (await call(token, "GET", "/traits")).status_code == 200
        keystone.revoke(token)
        await asyncio.sleep(1.5)  # the cache time, set short here (default 300 s)
        assert (await call(token, "GET", "/traits")).status_code == 401


async def test_revocation_takes_effect_exactly_at_the_cache_time(
    keystone: Keystone, keystone_settings: dict[str, Any]
) -> None:
    """What the README promises: a revoked token may work until the cache time has passed
    since it was validated, and never after."""
    settings = Settings(**keystone_settings, auth_keystone_cache_seconds=60)
    frank = keystone.user("frank", f"proj-{uuid.uuid4().hex[:6]}", ["reader"])
    token = keystone.user_token(frank)
    now = [time.time()]  # the cache's clock, moved by hand from the real present
    authenticator = KeystoneAuthenticator(settings, clock=lambda: now[0])
    try:
        assert (await authenticator.subject(token)).user_id == frank.id
        keystone.revoke(token)
        now[0] += 59
        assert (await authenticator.subject(token)).user_id == frank.id
        now[0] += 2
        with pytest.raises(InvalidToken):
            await authenticator.subject(token)
    finally:
        await authenticator.close()


async def test_a_service_token_is_validated_and_logged_beside_the_user(
    keystone: Keystone, keystone_app: Callable[..., Any]
) -> None:
    user = keystone.user("owner", f"proj-{uuid.uuid4().hex[:6]}", ["reader"])
    nova = keystone.user("nova", "service", ["service"])
    async with keystone_app() as call:
        token, service = keystone.user_token(user), keystone.user_token(nova)
        LOG_LINES.clear()
        ok = await call(token, "GET", "/traits", headers={"x-service-token": service})
        assert ok.status_code == 200
        logged = [json.loads(line) for line in LOG_LINES if '"request_id"' in line]
        request_id = ok.headers["x-openstack-request-id"]
        line = next(
            r for r in logged if r["request_id"] == request_id and r["name"] == "allot.access"
        )
        assert (line["subject"], line["service_subject"]) == (user.id, nova.id)
        bad = await call(token, "GET", "/traits", headers={"x-service-token": "gAAAAABnope"})
        assert bad.status_code == 401


async def test_keystone_alone_starts_in_production_and_refuses_jwts(
    keystone: Keystone, keystone_app: Callable[..., Any], tokens: dict[str, str]
) -> None:
    reader = keystone.user("reader", f"proj-{uuid.uuid4().hex[:6]}", ["reader"])
    async with keystone_app(env="production", auth_jwt_secret=None) as call:
        assert (await call(keystone.user_token(reader), "GET", "/traits")).status_code == 200
        refused = await call(tokens["admin"], "GET", "/traits")
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"] == f'Keystone uri="{keystone.url}"'


async def test_refused_service_credentials_are_503_not_401(
    keystone: Keystone, keystone_app: Callable[..., Any]
) -> None:
    reader = keystone.user("reader", f"proj-{uuid.uuid4().hex[:6]}", ["reader"])
    before = counted("allot_keystone_failures_total", reason="credentials")
    async with keystone_app(auth_keystone_password="not-the-password") as call:
        deferred = await call(keystone.user_token(reader), "GET", "/traits")
    assert deferred.status_code == 503 and deferred.headers["retry-after"] == "5"
    assert counted("allot_keystone_failures_total", reason="credentials") == before + 1


async def test_unreachable_keystone_is_503(
    keystone: Keystone, keystone_settings: dict[str, Any], app_factory: AppFactory
) -> None:
    from tests.deployment.topology import free_port

    nowhere = f"http://127.0.0.1:{free_port()}/v3"
    reader = keystone.user("reader", f"proj-{uuid.uuid4().hex[:6]}", ["reader"])
    settings = {**keystone_settings, "auth_keystone_url": nowhere, "auth_keystone_timeout": 2}
    async with app_factory(**settings) as application, make_client(application, VERSION) as c:
        token = keystone.user_token(reader)
        deferred = await c.get("/traits", headers={"x-auth-token": token})
    assert deferred.status_code == 503
    assert deferred.json()["errors"][0]["code"] == "allot.unavailable"


async def test_metrics_count_validations_hits_failures_and_latency(
    keystone: Keystone, keystone_app: Callable[..., Any]
) -> None:
    admin = keystone.user("metrics", f"proj-{uuid.uuid4().hex[:6]}", ["admin"])
    async with keystone_app() as call:
        token = keystone.user_token(admin)
        await call(token, "GET", "/traits")
        text = (await call(token, "GET", "/metrics")).text
    for name in (
        "allot_keystone_validations_total",
        "allot_keystone_cache_hits_total",
        "allot_keystone_failures_total",
        "allot_keystone_request_duration_seconds_bucket",
    ):
        assert name in text


def authentications() -> float:
    return counted("allot_keystone_request_duration_seconds_count", call="authenticate")


async def test_allots_own_token_is_renewed_when_keystone_refuses_it(
    keystone: Keystone, keystone_app: Callable[..., Any]
) -> None:
    own = keystone.user("allot-own", "service", ["service"])
    reader = keystone.user("reader", f"proj-{uuid.uuid4().hex[:6]}", ["reader"])
    own_settings = {"auth_keystone_username": own.name, "auth_keystone_password": own.password}
    async with keystone_app(**own_settings) as call:
        assert (await call(keystone.user_token(reader), "GET", "/traits")).status_code == 200
        before = authentications()
        keystone.revoke_tokens_of(own)  # allot's own token among them
        # Keystone revokes by the second: a token issued in the same second as the revocation
        # is revoked too. allot's next token must come from a later second.
        await asyncio.sleep(1.5)
        assert (await call(keystone.user_token(reader), "GET", "/traits")).status_code == 200
        assert authentications() == before + 1


async def test_allots_own_token_is_renewed_before_it_expires(
    keystone: Keystone, keystone_settings: dict[str, Any]
) -> None:
    reader = keystone.user("reader", f"proj-{uuid.uuid4().hex[:6]}", ["reader"])
    now = [time.time()]
    authenticator = KeystoneAuthenticator(Settings(**keystone_settings), clock=lambda: now[0])
    try:
        before = authentications()
        await authenticator.subject(keystone.user_token(reader))
        await authenticator.subject(keystone.user_token(reader))
        assert authentications() == before + 1  # one token of its own serves both
        # Keystone's tokens here live an hour: near its end the token is replaced unasked.
        now[0] += 3600 - 60
        await authenticator.subject(keystone.user_token(reader))
        assert authentications() == before + 2
    finally:
        await authenticator.close()


async def test_an_address_over_its_failed_auth_limit_costs_keystone_nothing(
    keystone: Keystone, keystone_app: Callable[..., Any]
) -> None:
    reader = keystone.user("reader", f"proj-{uuid.uuid4().hex[:6]}", ["reader"])
    async with keystone_app(rate_limit_anon="3/minute") as call:
        known = keystone.user_token(reader)
        assert (await call(known, "GET", "/traits")).status_code == 200
        asked = counted("allot_keystone_validations_total", result="invalid")
        made_up = [f"gAAAAAB{uuid.uuid4().hex}" for _ in range(6)]
        statuses = [(await call(token, "GET", "/traits")).status_code for token in made_up]
        assert statuses == [401, 401, 401, 429, 429, 429]
        assert counted("allot_keystone_validations_total", result="invalid") == asked + 3
        # A token already validated still works from that address.
        assert (await call(known, "GET", "/traits")).status_code == 200
