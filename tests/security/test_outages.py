"""A database connection lost in the middle of a write: 503 `allot.unavailable` with
Retry-After, never a 500, and the database holds all of the write or none of it.

allot talks to PostgreSQL through a proxy (tests.pg_proxy) that cuts the write's connection
at one point of its transaction: as BEGIN is sent, as a statement runs, as COMMIT is sent,
and just after COMMIT reached the server (the client cannot tell whether it committed).
Every write path is cut at each point: a claim, a POST /allocations, a reshape and an
inventory write. A client told 503 re-reads and retries (the README says so); here the
re-read shows all or nothing, and the retry goes through.
"""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import make_url

from app.engines import make_engine
from app.main import create_app
from app.migrations_runner import upgrade
from app.services.integrity import differences
from tests.allocation_helpers import body, generation_of, make_provider, new_uuid
from tests.conftest import PG_URL, make_client, scratch_database
from tests.conftest import test_settings as settings_for
from tests.pg_proxy import PgProxy
from tests.security.test_hostile_input import everything

pytestmark = pytest.mark.skipif(
    not PG_URL, reason="needs PostgreSQL (ALLOT_TEST_DATABASE_URL; CI sets it)"
)

PROXY_PORT = 8521
CUT_POINTS = ["begin", "statement", "commit", "after_commit"]


@dataclass
class Behind:
    app: FastAPI
    proxy: PgProxy
    client: httpx.AsyncClient


@pytest.fixture(scope="module")
async def behind(tokens: dict[str, str]) -> AsyncIterator[Behind]:
    """allot on a database of its own, reached only through the cutting proxy."""
    with tempfile.TemporaryDirectory() as tmp:
        async with scratch_database("postgresql", Path(tmp)) as url:
            settings = settings_for(url)
            engine = make_engine(url, settings)
            await upgrade(engine)
            await engine.dispose()
            parts = make_url(url)
            proxy = PgProxy((parts.host or "127.0.0.1", parts.port or 5432))
            await proxy.start(PROXY_PORT)
            proxied = parts.set(host="127.0.0.1", port=PROXY_PORT)
            application = create_app(
                settings_for(proxied.render_as_string(hide_password=False), write_retries=0)
            )
            headers = {
                "authorization": f"Bearer {tokens['admin']}",
                "openstack-api-version": "placement latest",
            }
            async with (
                application.router.lifespan_context(application),
                make_client(application, headers) as client,
            ):
                yield Behind(application, proxy, client)
            await proxy.cut_all()


@dataclass
class Write:
    """One write: the request, and what the API shows once it has been applied."""

    method: str
    path: str
    document: Any
    applied: Callable[[httpx.AsyncClient], Awaitable[None]]


async def _claim(c: httpx.AsyncClient) -> Write:
    rp = await make_provider(c, {"VCPU": {"total": 8}})
    consumer = new_uuid()

    async def applied(c: httpx.AsyncClient) -> None:
        shown = (await c.get(f"/allocations/{consumer}")).json()
        assert shown["allocations"][rp]["resources"] == {"VCPU": 3}
        assert (await c.get(f"/resource_providers/{rp}/usages")).json()["usages"] == {"VCPU": 3}

    return Write("PUT", f"/allocations/{consumer}", body({rp: {"VCPU": 3}}), applied)


async def _post_allocations(c: httpx.AsyncClient) -> Write:
    rp1 = await make_provider(c, {"VCPU": {"total": 8}})
    rp2 = await make_provider(c, {"DISK_GB": {"total": 100}})
    first, second = new_uuid(), new_uuid()
    document = {
        first: body({rp1: {"VCPU": 2}, rp2: {"DISK_GB": 10}}),
        second: body({rp1: {"VCPU": 1}}),
    }

    async def applied(c: httpx.AsyncClient) -> None:
        assert (await c.get(f"/resource_providers/{rp1}/usages")).json()["usages"] == {"VCPU": 3}
        usages = (await c.get(f"/resource_providers/{rp2}/usages")).json()["usages"]
        assert usages == {"DISK_GB": 10}
        assert set((await c.get(f"/allocations/{second}")).json()["allocations"]) == {rp1}

    return Write("POST", "/allocations", document, applied)


async def _reshape(c: httpx.AsyncClient) -> Write:
    root = await make_provider(c, {"VCPU": {"total": 8}, "DISK_GB": {"total": 100}})
    consumer = new_uuid()
    claimed = await c.put(f"/allocations/{consumer}", json=body({root: {"VCPU": 2}}))
    assert claimed.status_code == 204
    child = await make_provider(c, parent=root)
    document = {
        "inventories": {
            root: {
                "resource_provider_generation": await generation_of(c, root),
                "inventories": {"DISK_GB": {"total": 100}},
            },
            child: {"resource_provider_generation": 0, "inventories": {"VCPU": {"total": 8}}},
        },
        "allocations": {consumer: body({child: {"VCPU": 2}}, generation=1)},
    }

    async def applied(c: httpx.AsyncClient) -> None:
        assert set((await c.get(f"/allocations/{consumer}")).json()["allocations"]) == {child}
        inventories = (await c.get(f"/resource_providers/{root}/inventories")).json()
        assert set(inventories["inventories"]) == {"DISK_GB"}

    return Write("POST", "/reshaper", document, applied)


async def _inventory(c: httpx.AsyncClient) -> Write:
    rp = await make_provider(c, {"VCPU": {"total": 8}})
    generation = await generation_of(c, rp)

    async def applied(c: httpx.AsyncClient) -> None:
        shown = (await c.get(f"/resource_providers/{rp}/inventories/VCPU")).json()
        assert (shown["total"], shown["resource_provider_generation"]) == (16, generation + 1)

    document = {"resource_provider_generation": generation, "total": 16}
    return Write("PUT", f"/resource_providers/{rp}/inventories/VCPU", document, applied)


WRITES = {
    "claim": _claim,
    "POST /allocations": _post_allocations,
    "reshape": _reshape,
    "inventory": _inventory,
}


@pytest.mark.parametrize("at", CUT_POINTS)
@pytest.mark.parametrize("write", sorted(WRITES))
async def test_a_write_whose_connection_is_cut_is_503_and_all_or_nothing(
    behind: Behind, write: str, at: str
) -> None:
    c = behind.client
    w = await WRITES[write](c)
    before = await everything(behind.app)

    cut = behind.proxy.arm(at)
    response = await c.request(w.method, w.path, json=w.document)
    assert cut.done.is_set(), f"the {write} never reached the {at} point"
    assert response.status_code == 503, response.text
    assert response.json()["errors"][0]["code"] == "allot.unavailable"
    assert int(response.headers["retry-after"]) > 0

    # All or nothing: only a COMMIT that reached the server may have taken effect.
    if at == "after_commit":
        await w.applied(c)
    else:
        assert await everything(behind.app) == before
        # The client's retry (the same request: nothing it read has moved) goes through,
        # on a fresh connection.
        retried = await c.request(w.method, w.path, json=w.document)
        assert retried.status_code in (200, 204), retried.text
        await w.applied(c)
    # Whichever way it went, the kept usage counts equal the allocations.
    async with behind.app.state.database.engine.connect() as conn:
        assert await differences(conn) == []
