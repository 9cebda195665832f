"""Hostile input, as an attacker would send it: 400 with the generic envelope, never a 500,
and the database exactly as it was, on SQLite and on PostgreSQL alike.

The rule for text (app.text): no U+0000, no lone surrogate, no invalid UTF-8, wherever a
string enters (body values and keys, query values, path segments, the headers allot reads).
The rules for documents (app.json_documents): bounded depth and numbers, no NaN or Infinity,
no duplicate keys, no byte-order mark, UTF-8 only.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from app.models.base import Base
from tests.allocation_helpers import body, make_provider, new_uuid

HERE = "<<HOSTILE>>"

# Strings no field may hold, as they appear in a JSON body (escapes and raw bytes).
UNSTORABLE_TEXT = {
    "nul": b'"a\\u0000b"',
    "lone_high_surrogate": b'"\\ud800"',
    "lone_low_surrogate": b'"x\\udfffy"',
    "invalid_utf8": b'"a\xffb"',
    "encoded_surrogate": b'"\xed\xa0\x80"',
    "overlong": json.dumps("A" * 5000).encode(),
}
# The same, percent-encoded, in a path segment or a query value.
UNSTORABLE_IN_URL = {
    "nul": "a%00b",
    "invalid_utf8": "a%FFb",
    "encoded_surrogate": "%ED%A0%80",
    "truncated_utf8": "%E2%82",
}


@dataclass(frozen=True)
class World:
    """What exists before each hostile request: a provider with inventory, a consumer."""

    rp: str
    consumer: str


@pytest.fixture
async def world(client: httpx.AsyncClient) -> World:
    rp = await make_provider(client, {"VCPU": {"total": 8}, "DISK_GB": {"total": 100}})
    consumer = new_uuid()
    claimed = await client.put(f"/allocations/{consumer}", json=body({rp: {"VCPU": 1}}))
    assert claimed.status_code == 204
    assert (await client.put("/traits/CUSTOM_KNOWN")).status_code == 201
    return World(rp, consumer)


async def everything(app: FastAPI) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table: what a refused request must leave exactly as it was."""
    async with app.state.database.engine.connect() as conn:
        return {
            table.name: sorted(map(tuple, (await conn.execute(select(table))).all()), key=repr)
            for table in Base.metadata.sorted_tables
        }


# Documents with one string (value or key) to be replaced by a hostile one: every route that
# takes a body, every kind of string field it has.
Template = Callable[[World], tuple[str, str, Any]]
BODY_FIELDS: dict[str, Template] = {
    "provider name": lambda w: ("POST", "/resource_providers", {"name": HERE}),
    "provider uuid": lambda w: ("POST", "/resource_providers", {"name": "n", "uuid": HERE}),
    "provider parent": lambda w: (
        "POST",
        "/resource_providers",
        {"name": "n", "parent_provider_uuid": HERE},
    ),
    "provider rename": lambda w: ("PUT", f"/resource_providers/{w.rp}", {"name": HERE}),
    "inventories class key": lambda w: (
        "PUT",
        f"/resource_providers/{w.rp}/inventories",
        {"resource_provider_generation": 2, "inventories": {HERE: {"total": 1}}},
    ),
    "inventory class": lambda w: (
        "POST",
        f"/resource_providers/{w.rp}/inventories",
        {"resource_class": HERE, "total": 1},
    ),
    "aggregate": lambda w: (
        "PUT",
        f"/resource_providers/{w.rp}/aggregates",
        {"aggregates": [HERE], "resource_provider_generation": 2},
    ),
    "provider trait": lambda w: (
        "PUT",
        f"/resource_providers/{w.rp}/traits",
        {"traits": [HERE], "resource_provider_generation": 2},
    ),
    "resource class name": lambda w: ("POST", "/resource_classes", {"name": HERE}),
    "allocation provider key": lambda w: (
        "PUT",
        f"/allocations/{new_uuid()}",
        body({HERE: {"VCPU": 1}}),
    ),
    "allocation class key": lambda w: (
        "PUT",
        f"/allocations/{new_uuid()}",
        body({w.rp: {HERE: 1}}),
    ),
    "allocation project": lambda w: (
        "PUT",
        f"/allocations/{new_uuid()}",
        body({w.rp: {"VCPU": 1}}, project=HERE),
    ),
    "allocation user": lambda w: (
        "PUT",
        f"/allocations/{w.consumer}",
        body({w.rp: {"VCPU": 2}}, user=HERE, generation=1),
    ),
    "consumer type": lambda w: (
        "PUT",
        f"/allocations/{new_uuid()}",
        body({w.rp: {"VCPU": 1}}, consumer_type=HERE),
    ),
    "POST consumer key": lambda w: (
        "POST",
        "/allocations",
        {HERE: body({w.rp: {"VCPU": 1}})},
    ),
    "POST mappings key": lambda w: (
        "POST",
        "/allocations",
        {new_uuid(): body({w.rp: {"VCPU": 1}}) | {"mappings": {HERE: [w.rp]}}},
    ),
    "POST user": lambda w: (
        "POST",
        "/allocations",
        {new_uuid(): body({w.rp: {"VCPU": 1}}, user=HERE)},
    ),
    "reshape inventories key": lambda w: (
        "POST",
        "/reshaper",
        {
            "inventories": {HERE: {"resource_provider_generation": 2, "inventories": {}}},
            "allocations": {},
        },
    ),
    "reshape project": lambda w: (
        "POST",
        "/reshaper",
        {
            "inventories": {
                w.rp: {
                    "resource_provider_generation": 2,
                    "inventories": {"VCPU": {"total": 8}, "DISK_GB": {"total": 100}},
                }
            },
            "allocations": {w.consumer: body({w.rp: {"VCPU": 1}}, project=HERE, generation=1)},
        },
    ),
}

PATHS = [
    ("GET", "/resource_providers/{x}"),
    ("DELETE", "/resource_providers/{x}"),
    ("GET", "/resource_providers/{x}/inventories"),
    ("GET", "/resource_providers/{rp}/inventories/{x}"),
    ("DELETE", "/resource_providers/{rp}/inventories/{x}"),
    ("GET", "/resource_providers/{x}/usages"),
    ("GET", "/resource_classes/{x}"),
    ("PUT", "/resource_classes/CUSTOM_{x}"),
    ("GET", "/traits/{x}"),
    ("PUT", "/traits/CUSTOM_{x}"),
    ("GET", "/allocations/{x}"),
    ("DELETE", "/allocations/{x}"),
    ("GET", "/{x}"),
]

QUERIES = [
    "/resource_providers?name={x}",
    "/resource_providers?uuid={x}",
    "/resource_providers?member_of={x}",
    "/resource_providers?resources={x}",
    "/resource_providers?required={x}",
    "/resource_providers?in_tree={x}",
    "/allocation_candidates?resources=VCPU:1&member_of={x}",
    "/allocation_candidates?resources=VCPU:1&required={x}",
    "/allocation_candidates?resources={x}",
    "/allocation_candidates?resources1=VCPU:1&group_policy={x}",
    "/allocation_candidates?resources=VCPU:1&limit={x}",
    "/usages?project_id={x}",
    "/usages?project_id=p&user_id={x}",
    "/usages?project_id=p&consumer_type={x}",
    "/traits?name={x}",
    "/resource_providers?{x}=1",
]


def _with_hostile(document: Any, hostile: bytes) -> bytes:
    encoded = json.dumps(document).encode()
    assert encoded.count(json.dumps(HERE).encode()) == 1
    return encoded.replace(json.dumps(HERE).encode(), hostile)


async def _refused(
    client: httpx.AsyncClient,
    app: FastAPI,
    before: dict[str, Any],
    request: httpx.Request,
    code: str,
    what: str,
) -> None:
    response = await client.send(request)  # the shared client checks the body is generic
    assert response.status_code == 400, (what, response.status_code, response.text[:300])
    assert response.json()["errors"][0]["code"] == code, (what, response.text[:300])
    assert await everything(app) == before, f"{what} changed the database"


@pytest.mark.parametrize("kind", sorted(UNSTORABLE_TEXT))
async def test_unstorable_text_in_any_body_field_is_400(
    client: httpx.AsyncClient, app: FastAPI, world: World, kind: str
) -> None:
    before = await everything(app)
    hostile = UNSTORABLE_TEXT[kind]
    for field, template in BODY_FIELDS.items():
        method, path, document = template(world)
        request = client.build_request(
            method, path, content=_with_hostile(document, hostile), headers=_JSON
        )
        # The text rule itself (allot.validation); a string too long for its field is that
        # field's schema saying so, with the same code.
        await _refused(client, app, before, request, "allot.validation", f"{field} ({kind})")


@pytest.mark.parametrize("kind", sorted(UNSTORABLE_IN_URL))
async def test_unstorable_text_in_a_path_segment_is_400(
    client: httpx.AsyncClient, app: FastAPI, world: World, kind: str
) -> None:
    before = await everything(app)
    for method, template in PATHS:
        path = template.format(x=UNSTORABLE_IN_URL[kind], rp=world.rp)
        request = client.build_request(method, path)
        await _refused(client, app, before, request, "allot.validation", f"{method} {path}")


@pytest.mark.parametrize("kind", sorted(UNSTORABLE_IN_URL))
async def test_unstorable_text_in_a_query_value_is_400(
    client: httpx.AsyncClient, app: FastAPI, world: World, kind: str
) -> None:
    before = await everything(app)
    for template in QUERIES:
        path = template.format(x=UNSTORABLE_IN_URL[kind])
        request = client.build_request("GET", path)
        await _refused(client, app, before, request, "placement.query.bad_value", path)


@pytest.mark.parametrize(
    ("header", "value"),
    [
        ("openstack-api-version", b"placement 1.\xff"),
        ("openstack-api-version", b"placement\x00 1.2"),
        ("accept", b"application/json\xe9"),
        ("content-type", b"application/json\x00"),
        ("authorization", b"Bearer \xff\xfe"),
        ("x-auth-token", b"\x00"),
        ("x-service-token", b"gAAAA\xff"),
    ],
)
async def test_a_header_allot_reads_holds_text_only(
    client: httpx.AsyncClient, app: FastAPI, world: World, header: str, value: bytes
) -> None:
    before = await everything(app)
    request = client.build_request(
        "POST", "/resource_classes", json={"name": "CUSTOM_NEW"}, headers={header: value}
    )
    await _refused(client, app, before, request, "allot.validation", header)


# Documents that are not what JSON means, or cost more than their size, on the routes that
# take the largest and the most frequent bodies.
DOCUMENTS = {
    "deeply nested array": b"[" * 100_000,
    "deeply nested object": b'{"a":' * 50_000,
    "nesting inside a field": b'{"name": ' + b"[" * 1_000 + b"]" * 1_000 + b"}",
    "NaN": b'{"name": NaN}',
    "Infinity": b'{"name": "n", "uuid": Infinity}',
    "-Infinity": b'{"name": -Infinity}',
    "a float overflowing a double": b'{"name": 1e999}',
    "an integer of 5,000 digits": b'{"name": ' + b"9" * 5_000 + b"}",
    "an integer of 50 digits": b'{"name": ' + b"9" * 50 + b"}",
    "a duplicate key": b'{"name": "first", "name": "second"}',
    "a byte-order mark": b'\xef\xbb\xbf{"name": "n"}',
    "UTF-16": '{"name": "n"}'.encode("utf-16"),
    "not JSON": b'{"name": "n",}',
    "empty": b"",
}
DOCUMENT_ROUTES = [
    ("POST", "/resource_providers"),
    ("PUT", "/allocations/{consumer}"),
    ("POST", "/allocations"),
    ("PUT", "/resource_providers/{rp}/inventories"),
    ("POST", "/reshaper"),
]


@pytest.mark.parametrize("kind", sorted(DOCUMENTS))
async def test_a_malformed_or_unbounded_document_is_400(
    client: httpx.AsyncClient, app: FastAPI, world: World, kind: str
) -> None:
    before = await everything(app)
    for method, template in DOCUMENT_ROUTES:
        path = template.format(consumer=world.consumer, rp=world.rp)
        request = client.build_request(method, path, content=DOCUMENTS[kind], headers=_JSON)
        code = "allot.validation" if kind == "UTF-16" else "placement.undefined_code"
        await _refused(client, app, before, request, code, f"{method} {path}: {kind}")


@pytest.mark.parametrize("charset", ["latin-1", "utf-16", "us-ascii", ""])
async def test_a_charset_other_than_utf8_is_400(
    client: httpx.AsyncClient, app: FastAPI, world: World, charset: str
) -> None:
    before = await everything(app)
    request = client.build_request(
        "POST",
        "/resource_classes",
        content=b'{"name": "CUSTOM_NEW"}',
        headers={"content-type": f"application/json; charset={charset}"},
    )
    await _refused(client, app, before, request, "placement.undefined_code", charset)


async def test_what_the_rules_allow_still_works(client: httpx.AsyncClient, world: World) -> None:
    """The rules refuse only what they name: escapes, emoji, non-ASCII names and a
    charset=UTF-8 spelled any way pass, and an integer at the edge of its field is the
    field's own answer."""
    named = await client.post(
        "/resource_providers",
        content=b'{"name": "r\\u00e9seau \\ud83d\\ude80 \\"quoted\\" \\\\u0000"}',
        headers={"content-type": 'application/json; charset="UTF-8"'},
    )
    assert named.status_code == 200, named.text
    assert named.json()["name"] == 'réseau 🚀 "quoted" \\u0000'
    found = await client.get("/resource_providers", params={"name": 'réseau 🚀 "quoted" \\u0000'})
    assert [p["uuid"] for p in found.json()["resource_providers"]] == [named.json()["uuid"]]
    too_big = await client.put(
        f"/resource_providers/{world.rp}/inventories",
        json={"resource_provider_generation": 2, "inventories": {"VCPU": {"total": 2**31}}},
    )
    assert too_big.status_code == 400
    assert too_big.json()["errors"][0]["code"] == "allot.validation"


_JSON = {"content-type": "application/json"}
