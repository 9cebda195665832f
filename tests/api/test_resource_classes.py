"""/resource_classes: standard classes are listed and read-only; CUSTOM_ ones are managed."""

from __future__ import annotations

import httpx
import os_resource_classes
import pytest


async def test_lists_every_standard_class_with_links(client: httpx.AsyncClient) -> None:
    response = await client.get("/resource_classes")
    assert response.status_code == 200
    classes = response.json()["resource_classes"]
    assert [c["name"] for c in classes] == list(os_resource_classes.STANDARDS)
    assert classes[0] == {
        "name": "VCPU",
        "links": [{"rel": "self", "href": "/resource_classes/VCPU"}],
    }


async def test_not_there_before_1_2(client: httpx.AsyncClient) -> None:
    response = await client.get(
        "/resource_classes", headers={"openstack-api-version": "placement 1.1"}
    )
    assert response.status_code == 404


async def test_create_show_and_delete_a_custom_class(client: httpx.AsyncClient) -> None:
    created = await client.post("/resource_classes", json={"name": "CUSTOM_FPGA"})
    assert created.status_code == 201
    assert created.headers["location"].endswith("/resource_classes/CUSTOM_FPGA")
    shown = await client.get("/resource_classes/CUSTOM_FPGA")
    assert shown.json()["name"] == "CUSTOM_FPGA"
    assert (await client.delete("/resource_classes/CUSTOM_FPGA")).status_code == 204
    assert (await client.get("/resource_classes/CUSTOM_FPGA")).status_code == 404


async def test_duplicate_create_is_409(client: httpx.AsyncClient) -> None:
    await client.post("/resource_classes", json={"name": "CUSTOM_X"})
    again = await client.post("/resource_classes", json={"name": "CUSTOM_X"})
    assert again.status_code == 409
    assert again.json()["errors"][0]["code"] == "placement.duplicate_name"


@pytest.mark.parametrize(
    "body",
    [
        {"name": "FOO"},
        {"name": "CUSTOM_lower"},
        {"name": "CUSTOM_Illegal&@!Name?"},
        {"name": "CUSTOM_" + "A" * 250},
        {"name": "CUSTOM_OK", "extra": 1},
        {"name": 5},
        {},
        [],
    ],
)
async def test_bad_bodies_are_400_and_change_nothing(
    client: httpx.AsyncClient, body: object
) -> None:
    before = (await client.get("/resource_classes")).json()
    response = await client.post("/resource_classes", json=body)
    assert response.status_code == 400
    assert (await client.get("/resource_classes")).json() == before


async def test_malformed_json_and_wrong_media_type(client: httpx.AsyncClient) -> None:
    bad = await client.post(
        "/resource_classes", content=b"{nope", headers={"content-type": "application/json"}
    )
    assert bad.status_code == 400
    wrong = await client.post(
        "/resource_classes", content=b"name", headers={"content-type": "text/plain"}
    )
    assert wrong.status_code == 415


async def test_put_ensures_from_1_7(client: httpx.AsyncClient) -> None:
    first = await client.put("/resource_classes/CUSTOM_GPU")
    assert first.status_code == 201
    second = await client.put("/resource_classes/CUSTOM_GPU")
    assert second.status_code == 204
    # Either way the client is told where the class lives.
    assert first.headers["location"] == second.headers["location"]
    assert first.headers["location"] == "http://allot.test/resource_classes/CUSTOM_GPU"
    bad = await client.put("/resource_classes/GPU")
    assert bad.status_code == 400


async def test_a_write_is_not_refused_for_what_the_client_accepts(
    client: httpx.AsyncClient,
) -> None:
    # Placement checks Accept on reads only: a bad body is still the 400 it deserves.
    response = await client.post(
        "/resource_classes", json={"name": "FOO"}, headers={"accept": "text/plain"}
    )
    assert response.status_code == 400


async def test_put_renames_before_1_7(client: httpx.AsyncClient) -> None:
    v16 = {"openstack-api-version": "placement 1.6"}
    await client.post("/resource_classes", json={"name": "CUSTOM_OLD"})
    renamed = await client.put(
        "/resource_classes/CUSTOM_OLD", json={"name": "CUSTOM_NEW"}, headers=v16
    )
    assert renamed.status_code == 200
    assert renamed.json()["name"] == "CUSTOM_NEW"
    standard = await client.put("/resource_classes/VCPU", json={"name": "CUSTOM_V"}, headers=v16)
    assert standard.status_code == 400


async def test_standard_classes_cannot_be_deleted(client: httpx.AsyncClient) -> None:
    assert (await client.delete("/resource_classes/VCPU")).status_code == 400


async def test_members_read_but_cannot_create(client: httpx.AsyncClient, as_: object) -> None:
    member = as_("member_a")  # type: ignore[operator]
    assert (await client.get("/resource_classes", headers=member)).status_code == 200
    denied = await client.post("/resource_classes", json={"name": "CUSTOM_Y"}, headers=member)
    assert denied.status_code == 403
    assert denied.json()["errors"][0]["code"] == "allot.auth.forbidden"
