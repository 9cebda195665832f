"""GET/PUT/DELETE /allocations/{consumer_uuid}: every microversion's shape, and every kind of
bad input answered with its status while the database stays exactly as it was."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.allocation_helpers import (
    OTHER_PROJECT,
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
from tests.conftest import statements_sent

INCOMPLETE = "00000000-0000-0000-0000-000000000000"


@pytest.fixture
async def rp(client: httpx.AsyncClient) -> str:
    return await make_provider(
        client,
        {
            "VCPU": {"total": 8, "max_unit": 4},
            "MEMORY_MB": {"total": 2048, "min_unit": 64, "step_size": 64, "max_unit": 1024},
            "DISK_GB": {"total": 100},
        },
    )


async def test_an_unknown_consumer_has_no_allocations(client: httpx.AsyncClient) -> None:
    for version in ("1.0", "1.27", "latest"):
        response = await client.get(f"/allocations/{new_uuid()}", headers=v(version))
        assert response.status_code == 200
        assert response.json() == {"allocations": {}}
    # Anything that is not a UUID names no consumer either.
    assert (await client.get("/allocations/not-a-uuid")).json() == {"allocations": {}}


async def test_put_then_get_shows_everything_at_the_latest_version(
    client: httpx.AsyncClient, rp: str
) -> None:
    consumer = new_uuid()
    put = await client.put(
        f"/allocations/{consumer}", json=body({rp: {"VCPU": 2, "MEMORY_MB": 512}})
    )
    assert put.status_code == 204
    assert "cache-control" not in put.headers
    shown = await client.get(f"/allocations/{consumer}")
    assert shown.json() == {
        "allocations": {rp: {"generation": 2, "resources": {"VCPU": 2, "MEMORY_MB": 512}}},
        "project_id": PROJECT,
        "user_id": USER,
        "consumer_generation": 1,
        "consumer_type": "INSTANCE",
    }
    assert shown.headers["cache-control"] == "no-cache"
    assert shown.headers["last-modified"].endswith(" GMT")


async def test_get_shape_by_microversion(client: httpx.AsyncClient, rp: str) -> None:
    consumer = new_uuid()
    await client.put(f"/allocations/{consumer}", json=body({rp: {"VCPU": 1}}))
    old = await client.get(f"/allocations/{consumer}", headers=v("1.11"))
    assert old.json() == {"allocations": {rp: {"generation": 2, "resources": {"VCPU": 1}}}}
    assert "last-modified" not in old.headers
    assert set((await client.get(f"/allocations/{consumer}", headers=v("1.12"))).json()) == {
        "allocations",
        "project_id",
        "user_id",
    }
    at_128 = (await client.get(f"/allocations/{consumer}", headers=v("1.28"))).json()
    assert at_128["consumer_generation"] == 1 and "consumer_type" not in at_128


async def test_list_format_before_1_12_records_the_incomplete_consumer_ids(
    client: httpx.AsyncClient, rp: str
) -> None:
    consumer = new_uuid()
    listed = {"allocations": [{"resource_provider": {"uuid": rp}, "resources": {"DISK_GB": 10}}]}
    assert (
        await client.put(f"/allocations/{consumer}", json=listed, headers=v("1.7"))
    ).status_code == 204
    shown = (await client.get(f"/allocations/{consumer}", headers=v("1.12"))).json()
    assert shown["project_id"] == INCOMPLETE and shown["user_id"] == INCOMPLETE
    # Before 1.8 there is no project_id field at all; from 1.8 it is required.
    with_project = {**listed, "project_id": PROJECT, "user_id": USER}
    assert (
        await client.put(f"/allocations/{consumer}", json=with_project, headers=v("1.7"))
    ).status_code == 400
    assert (
        await client.put(f"/allocations/{consumer}", json=listed, headers=v("1.8"))
    ).status_code == 400
    assert (
        await client.put(f"/allocations/{consumer}", json=with_project, headers=v("1.11"))
    ).status_code == 204
    # 1.12 wants the dict format.
    assert (
        await client.put(f"/allocations/{consumer}", json=with_project, headers=v("1.12"))
    ).status_code == 400


async def test_what_get_returns_can_be_put_back(client: httpx.AsyncClient, rp: str) -> None:
    consumer = new_uuid()
    await client.put(f"/allocations/{consumer}", json=body({rp: {"VCPU": 1}}))
    shown = (await client.get(f"/allocations/{consumer}", headers=v("1.12"))).json()
    again = await client.put(f"/allocations/{consumer}", json=shown, headers=v("1.12"))
    assert again.status_code == 204


async def test_a_put_replaces_rather_than_adds(client: httpx.AsyncClient, rp: str) -> None:
    consumer = new_uuid()
    await client.put(f"/allocations/{consumer}", json=body({rp: {"DISK_GB": 10}}))
    await client.put(f"/allocations/{consumer}", json=body({rp: {"DISK_GB": 12}}, generation=1))
    usages = (await client.get(f"/resource_providers/{rp}/usages")).json()["usages"]
    assert usages["DISK_GB"] == 12


async def test_consumer_generations_from_1_28(client: httpx.AsyncClient, rp: str) -> None:
    consumer = new_uuid()
    url = f"/allocations/{consumer}"
    no_generation = body({rp: {"VCPU": 1}})
    del no_generation["consumer_generation"]
    assert (await client.put(url, json=no_generation)).status_code == 400
    not_new = await client.put(url, json=body({rp: {"VCPU": 1}}, generation=5))
    assert not_new.status_code == 409
    assert not_new.json()["errors"][0]["code"] == "placement.concurrent_update"
    assert (await client.put(url, json=body({rp: {"VCPU": 1}}))).status_code == 204
    stale = await client.put(url, json=body({rp: {"VCPU": 2}}, generation=None))
    assert stale.status_code == 409
    assert stale.json()["errors"][0]["code"] == "placement.concurrent_update"
    assert (await client.put(url, json=body({rp: {"VCPU": 2}}, generation=1))).status_code == 204
    assert (await client.get(url)).json()["consumer_generation"] == 2
    # Before 1.28 no generation is sent, and none is checked; it still moves.
    old = {"allocations": {rp: {"resources": {"VCPU": 3}}}, "project_id": PROJECT, "user_id": USER}
    assert (await client.put(url, json=old, headers=v("1.27"))).status_code == 204
    assert (await client.get(url)).json()["consumer_generation"] == 3


async def test_empty_allocations_release_and_delete_the_consumer(
    client: httpx.AsyncClient, rp: str, app: FastAPI
) -> None:
    consumer = new_uuid()
    url = f"/allocations/{consumer}"
    await client.put(url, json=body({rp: {"VCPU": 1}}))
    assert (await client.put(url, json=body({}, generation=1))).status_code == 204
    assert (await client.get(url)).json() == {"allocations": {}}
    assert (await snapshot(app))["counts"]["consumers"] == 0
    # So the consumer is new again: null is the generation to send.
    assert (await client.put(url, json=body({rp: {"VCPU": 1}}))).status_code == 204
    # Empty allocations need 1.28.
    old = {"allocations": {}, "project_id": PROJECT, "user_id": USER}
    assert (await client.put(url, json=old, headers=v("1.27"))).status_code == 400


async def test_empty_allocations_for_a_new_consumer_create_nothing(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    before = await snapshot(app)
    assert (await client.put(f"/allocations/{new_uuid()}", json=body({}))).status_code == 204
    assert await snapshot(app) == before


async def test_consumer_types_from_1_38(client: httpx.AsyncClient, rp: str) -> None:
    consumer = new_uuid()
    url = f"/allocations/{consumer}"
    assert (
        await client.put(url, json=body({rp: {"VCPU": 1}}, consumer_type=None))
    ).status_code == 400
    untyped = body({rp: {"VCPU": 1}}, consumer_type=None)
    assert (await client.put(url, json=untyped, headers=v("1.37"))).status_code == 204
    assert (await client.get(url)).json()["consumer_type"] == "unknown"
    typed = body({rp: {"VCPU": 1}}, generation=1, consumer_type="MIGRATION")
    assert (await client.put(url, json=typed)).status_code == 204
    assert (await client.get(url)).json()["consumer_type"] == "MIGRATION"
    # An older microversion does not touch the type.
    untyped["consumer_generation"] = 2
    assert (await client.put(url, json=untyped, headers=v("1.37"))).status_code == 204
    assert (await client.get(url)).json()["consumer_type"] == "MIGRATION"
    lower = body({rp: {"VCPU": 1}}, generation=3, consumer_type="instance")
    assert (await client.put(url, json=lower)).status_code == 400
    with_type_too_early = body({rp: {"VCPU": 1}}, generation=3)
    assert (await client.put(url, json=with_type_too_early, headers=v("1.37"))).status_code == 400


async def test_mappings_are_accepted_from_1_34(client: httpx.AsyncClient, rp: str) -> None:
    url = f"/allocations/{new_uuid()}"
    mapped = {**body({rp: {"VCPU": 1}}, consumer_type=None), "mappings": {"": [rp], "_NET1": [rp]}}
    assert (await client.put(url, json=mapped, headers=v("1.33"))).status_code == 400
    assert (
        await client.put(url, json={**mapped, "mappings": {}}, headers=v("1.34"))
    ).status_code == 400
    bad_form = {**mapped, "mappings": {"alpha": "beta"}}
    assert (await client.put(url, json=bad_form, headers=v("1.34"))).status_code == 400
    assert (await client.put(url, json=mapped, headers=v("1.34"))).status_code == 204
    assert "mappings" not in (await client.get(url)).json()


async def test_any_spelling_of_a_consumer_uuid_is_the_same_consumer(
    client: httpx.AsyncClient, rp: str
) -> None:
    consumer = new_uuid()
    dashless = consumer.replace("-", "").upper()
    assert (
        await client.put(f"/allocations/{dashless}", json=body({rp: {"VCPU": 1}}))
    ).status_code == 204
    shown = (await client.get(f"/allocations/{consumer}")).json()
    assert shown["allocations"][rp]["resources"] == {"VCPU": 1}
    bad = await client.put("/allocations/not-a-uuid", json=body({rp: {"VCPU": 1}}))
    assert bad.status_code == 400


async def test_project_and_user_of_a_consumer_can_change(
    client: httpx.AsyncClient, rp: str
) -> None:
    url = f"/allocations/{new_uuid()}"
    await client.put(url, json=body({rp: {"VCPU": 1}}))
    moved = body({rp: {"VCPU": 1}}, generation=1, project=OTHER_PROJECT, user=OTHER_USER)
    assert (await client.put(url, json=moved)).status_code == 204
    shown = (await client.get(url)).json()
    assert (shown["project_id"], shown["user_id"]) == (OTHER_PROJECT, OTHER_USER)
    usages = (await client.get(f"/usages?project_id={PROJECT}", headers=v("1.9"))).json()
    assert usages == {"usages": {}}


async def test_provider_generations_move_as_in_placement(client: httpx.AsyncClient) -> None:
    """A write bumps the providers it allocates on (not those it leaves); DELETE bumps none."""
    a = await make_provider(client, {"VCPU": {"total": 8}})
    b = await make_provider(client, {"VCPU": {"total": 8}})
    url = f"/allocations/{new_uuid()}"
    await client.put(url, json=body({a: {"VCPU": 1}}))
    assert (await generation_of(client, a), await generation_of(client, b)) == (2, 1)
    await client.put(url, json=body({b: {"VCPU": 1}}, generation=1))
    assert (await generation_of(client, a), await generation_of(client, b)) == (2, 2)
    assert (await client.delete(url)).status_code == 204
    assert (await generation_of(client, a), await generation_of(client, b)) == (2, 2)


async def test_delete_releases_everything_once(
    client: httpx.AsyncClient, rp: str, app: FastAPI
) -> None:
    url = f"/allocations/{new_uuid()}"
    await client.put(url, json=body({rp: {"VCPU": 2, "DISK_GB": 5}}))
    assert (await client.delete(url)).status_code == 204
    assert (await client.get(f"/resource_providers/{rp}/usages")).json()["usages"] == {
        "DISK_GB": 0,
        "MEMORY_MB": 0,
        "VCPU": 0,
    }
    again = await client.delete(url)
    assert again.status_code == 404
    assert (await client.delete("/allocations/not-a-uuid")).status_code == 404
    assert (await snapshot(app))["counts"]["consumers"] == 0


async def test_allocations_across_providers_are_one_write(client: httpx.AsyncClient) -> None:
    compute = await make_provider(client, {"VCPU": {"total": 8}})
    disk = await make_provider(client, {"DISK_GB": {"total": 100}})
    url = f"/allocations/{new_uuid()}"
    assert (
        await client.put(url, json=body({compute: {"VCPU": 2}, disk: {"DISK_GB": 50}}))
    ).status_code == 204
    shown = (await client.get(url)).json()["allocations"]
    assert shown == {
        compute: {"generation": 2, "resources": {"VCPU": 2}},
        disk: {"generation": 2, "resources": {"DISK_GB": 50}},
    }


# --- every rejection class leaves the database exactly as it was ---

MISSING_RP = "be8b9cba-e7db-4a12-a386-99b4242167fe"
Case = Callable[[str, str], Any]  # (provider, existing consumer) -> request


def _put(allocs: Callable[[str], dict[str, Any]], **kw: Any) -> Case:
    def make(rp: str, existing: str) -> Any:
        return ("PUT", f"/allocations/{new_uuid()}", body(allocs(rp), **kw), "latest")

    return make


def _put_existing(document: Callable[[str], dict[str, Any]], version: str = "latest") -> Case:
    def make(rp: str, existing: str) -> Any:
        return ("PUT", f"/allocations/{existing}", document(rp), version)

    return make


NOT_FOUND = "placement.resource_provider.not_found"
STALE = "placement.concurrent_update"
INVALID = "allot.validation"

REJECTIONS: dict[str, tuple[Case, int, str | None]] = {
    "unknown provider": (_put(lambda rp: {MISSING_RP: {"VCPU": 1}}), 400, NOT_FOUND),
    "unknown class": (_put(lambda rp: {rp: {"CUSTOM_PONY": 1}}), 400, None),
    "malformed class": (_put(lambda rp: {rp: {"vcpu": 1}}), 400, INVALID),
    "zero amount": (_put(lambda rp: {rp: {"VCPU": 0}}), 400, INVALID),
    "amount past 2^31": (_put(lambda rp: {rp: {"VCPU": 2**31}}), 400, INVALID),
    "negative amount": (_put(lambda rp: {rp: {"VCPU": -1}}), 400, INVALID),
    "boolean amount": (_put(lambda rp: {rp: {"VCPU": True}}), 400, INVALID),
    "above max_unit": (_put(lambda rp: {rp: {"VCPU": 5}}), 409, None),
    "below min_unit": (_put(lambda rp: {rp: {"MEMORY_MB": 32}}), 409, None),
    "off step_size": (_put(lambda rp: {rp: {"MEMORY_MB": 100}}), 409, None),
    "no inventory of the class": (_put(lambda rp: {rp: {"PCI_DEVICE": 1}}), 409, None),
    "over capacity": (_put(lambda rp: {rp: {"DISK_GB": 99}}), 409, None),
    "new consumer with a generation": (
        _put(lambda rp: {rp: {"VCPU": 1}}, generation=3),
        409,
        STALE,
    ),
    "existing consumer without one": (
        _put_existing(lambda rp: body({rp: {"VCPU": 1}}, generation=None)),
        409,
        STALE,
    ),
    "stale consumer generation": (
        _put_existing(lambda rp: body({rp: {"VCPU": 1}}, generation=7)),
        409,
        STALE,
    ),
    "stale generation releasing": (_put_existing(lambda rp: body({}, generation=7)), 409, STALE),
    "unknown field": (
        _put_existing(lambda rp: {**body({rp: {"VCPU": 1}}, generation=1), "extra": 1}),
        400,
        INVALID,
    ),
    "unknown field in a provider": (
        _put_existing(
            lambda rp: {
                **body({}, generation=1),
                "allocations": {rp: {"resources": {"VCPU": 1}, "cow": 1}},
            }
        ),
        400,
        INVALID,
    ),
    "provider key not a uuid": (_put(lambda rp: {"nice_house_friend": {"VCPU": 1}}), 400, INVALID),
    "empty resources": (_put(lambda rp: {rp: {}}), 400, INVALID),
    "empty project": (_put(lambda rp: {rp: {"VCPU": 1}}, project=""), 400, INVALID),
    "project too long": (_put(lambda rp: {rp: {"VCPU": 1}}, project="p" * 256), 400, INVALID),
    "list format at 1.12": (
        _put_existing(
            lambda rp: {
                "allocations": [{"resource_provider": {"uuid": rp}, "resources": {"VCPU": 1}}],
                "project_id": PROJECT,
                "user_id": USER,
            },
            "1.12",
        ),
        400,
        INVALID,
    ),
    "same provider twice in the list format": (
        _put_existing(
            lambda rp: {
                "allocations": [{"resource_provider": {"uuid": rp}, "resources": {"VCPU": 1}}] * 2
            },
            "1.7",
        ),
        400,
        INVALID,
    ),
    "empty list": (_put_existing(lambda rp: {"allocations": []}, "1.7"), 400, INVALID),
    "not an object": (_put_existing(lambda rp: [1, 2]), 400, INVALID),
    "too many providers": (
        _put(lambda rp: {new_uuid(): {"VCPU": 1} for _ in range(101)}),
        400,
        INVALID,
    ),
}


@pytest.mark.parametrize("case", list(REJECTIONS), ids=list(REJECTIONS))
async def test_rejected_writes_change_nothing(
    client: httpx.AsyncClient, rp: str, app: FastAPI, case: str
) -> None:
    existing = new_uuid()
    await client.put(f"/allocations/{existing}", json=body({rp: {"DISK_GB": 2, "VCPU": 1}}))
    make, status, code = REJECTIONS[case]
    method, url, document, version = make(rp, existing)
    before = await snapshot(app)
    response = await client.request(method, url, json=document, headers=v(version))
    assert response.status_code == status, response.text
    if code is not None:
        assert response.json()["errors"][0]["code"] == code
    assert await snapshot(app) == before


async def test_capacity_errors_point_at_the_amount(client: httpx.AsyncClient, rp: str) -> None:
    response = await client.put(f"/allocations/{new_uuid()}", json=body({rp: {"DISK_GB": 101}}))
    assert response.status_code == 409
    error = response.json()["errors"][0]
    assert error["source"] == {"pointer": f"/allocations/{rp}/resources/DISK_GB"}
    assert "101" not in error["detail"]


async def test_bodies_that_are_not_json(client: httpx.AsyncClient, rp: str, app: FastAPI) -> None:
    before = await snapshot(app)
    url = f"/allocations/{new_uuid()}"
    wrong_type = await client.put(url, content=b"x", headers={"content-type": "text/plain"})
    assert wrong_type.status_code == 415
    broken = await client.put(url, content=b"{nope", headers={"content-type": "application/json"})
    assert broken.status_code == 400
    empty = await client.put(url, content=b"", headers={"content-type": "application/json"})
    assert empty.status_code == 400
    assert await snapshot(app) == before


async def test_get_allocations_without_a_consumer_is_405(client: httpx.AsyncClient) -> None:
    response = await client.get("/allocations")
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"


async def test_a_claim_costs_two_statements_on_postgresql(
    client: httpx.AsyncClient, rp: str, app: FastAPI
) -> None:
    """What a scheduler pays per claim: the round trips are the cost (DESIGN section 7)."""
    await client.put(f"/allocations/{new_uuid()}", json=body({rp: {"VCPU": 1}}))  # owners exist
    with statements_sent(app) as statements:
        claim = body({rp: {"VCPU": 1, "MEMORY_MB": 64}})
        assert (await client.put(f"/allocations/{new_uuid()}", json=claim)).status_code == 204
    # The consumer with its owners' ids, then the providers' lock and bump; the allocations
    # with the capacity read and the inventories' counts. PostgreSQL runs the first pair as one
    # statement and the three others as one; SQLite (whose writers queue at BEGIN) runs five.
    if app.state.database.dialect == "postgresql":
        assert statements == ["WITH", "WITH"]
    else:
        assert statements == ["INSERT", "UPDATE", "SELECT", "INSERT", "UPDATE"]


async def test_a_new_consumer_of_a_new_user_or_type_is_recorded_with_them(
    client: httpx.AsyncClient, rp: str, app: FastAPI
) -> None:
    """The one-statement claim applies only when project, user and type are known already."""
    await client.put(f"/allocations/{new_uuid()}", json=body({rp: {"VCPU": 1}}))
    for claim in (
        body({rp: {"VCPU": 1}}, user=OTHER_USER),
        body({rp: {"VCPU": 1}}, consumer_type="MIGRATION"),
        body({rp: {"VCPU": 1}}, project=OTHER_PROJECT),
    ):
        consumer = new_uuid()
        assert (await client.put(f"/allocations/{consumer}", json=claim)).status_code == 204
        shown = (await client.get(f"/allocations/{consumer}")).json()
        assert shown["project_id"] == claim["project_id"]
        assert shown["user_id"] == claim["user_id"]
        assert shown["consumer_type"] == claim["consumer_type"]
        assert shown["consumer_generation"] == 1
    counts = (await snapshot(app))["counts"]
    assert (counts["projects"], counts["users"], counts["consumer_types"]) == (2, 2, 2)
