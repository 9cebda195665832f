"""/resource_providers: create, show, list, rename, nest, re-parent, delete."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

PARENT = "542df8ed-9be2-49b9-b4db-6d3183ff8ec8"
CHILD = "7d2590ae-fb85-4080-9306-058b4c915e3f"
OTHER = "d0b381e9-8761-42de-8e6c-bba99a96d5f5"
MISSING = "2e1dda56-8b18-4fb9-8c5c-3125891b7143"


def v(version: str) -> dict[str, str]:
    return {"openstack-api-version": f"placement {version}"}


async def create(client: httpx.AsyncClient, name: str, **fields: Any) -> dict[str, Any]:
    response = await client.post("/resource_providers", json={"name": name, **fields})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def links(uuid: str, *rels: str) -> list[dict[str, str]]:
    base = f"/resource_providers/{uuid}"
    return [{"rel": "self", "href": base}] + [{"rel": rel, "href": f"{base}/{rel}"} for rel in rels]


ALL_RELS = ("inventories", "usages", "aggregates", "traits", "allocations")


async def test_create_returns_the_provider_like_the_reference_sample(
    client: httpx.AsyncClient,
) -> None:
    await create(client, "parent", uuid=PARENT)
    response = await client.post(
        "/resource_providers",
        json={"name": "NFS Share", "uuid": CHILD, "parent_provider_uuid": PARENT},
    )
    assert response.status_code == 200
    assert response.headers["location"] == f"http://allot.test/resource_providers/{CHILD}"
    assert response.headers["cache-control"] == "no-cache"
    assert "last-modified" in response.headers
    assert response.json() == {
        "generation": 0,
        "links": links(CHILD, *ALL_RELS),
        "name": "NFS Share",
        "uuid": CHILD,
        "parent_provider_uuid": PARENT,
        "root_provider_uuid": PARENT,
    }


async def test_create_before_1_20_is_201_without_a_body(client: httpx.AsyncClient) -> None:
    response = await client.post("/resource_providers", json={"name": "old"}, headers=v("1.19"))
    assert response.status_code == 201
    assert response.content == b""
    uuid = response.headers["location"].rsplit("/", 1)[1]
    shown = await client.get(f"/resource_providers/{uuid}")
    assert shown.json()["name"] == "old"
    assert shown.json()["root_provider_uuid"] == uuid


async def test_show_at_1_0_has_no_nesting_fields_and_fewer_links(
    client: httpx.AsyncClient,
) -> None:
    await create(client, "rp", uuid=PARENT)
    shown = await client.get(f"/resource_providers/{PARENT}", headers=v("1.0"))
    assert shown.status_code == 200
    assert shown.json() == {
        "uuid": PARENT,
        "name": "rp",
        "generation": 0,
        "links": links(PARENT, "inventories", "usages"),
    }
    assert "cache-control" not in shown.headers
    at_1_6 = await client.get(f"/resource_providers/{PARENT}", headers=v("1.6"))
    assert at_1_6.json()["links"] == links(PARENT, "inventories", "usages", "aggregates", "traits")


async def test_dashless_uuid_is_stored_dashed_and_is_a_duplicate(
    client: httpx.AsyncClient,
) -> None:
    made = await create(client, "dashed", uuid=PARENT.replace("-", "").upper())
    assert made["uuid"] == PARENT
    again = await client.post(
        "/resource_providers", json={"name": "dashless", "uuid": PARENT.replace("-", "")}
    )
    assert again.status_code == 409
    assert again.json()["errors"][0]["code"] == "placement.duplicate_name"


async def test_duplicate_name_is_409(client: httpx.AsyncClient) -> None:
    await create(client, "same")
    again = await client.post("/resource_providers", json={"name": "same"})
    assert again.status_code == 409
    assert again.json()["errors"][0]["code"] == "placement.duplicate_name"


async def test_missing_provider_is_404(client: httpx.AsyncClient) -> None:
    assert (await client.get(f"/resource_providers/{MISSING}")).status_code == 404
    assert (await client.get("/resource_providers/not-a-uuid")).status_code == 404
    assert (await client.delete(f"/resource_providers/{MISSING}")).status_code == 404
    put = await client.put(f"/resource_providers/{MISSING}", json={"name": "x"})
    assert put.status_code == 404


@pytest.mark.parametrize(
    ("body", "version"),
    [
        ({"name": "x", "uuid": "this is not a uuid"}, "latest"),
        ({"name": "x" * 201}, "latest"),
        ({"name": ""}, "latest"),
        ({"uuid": PARENT}, "latest"),
        ({"name": 5}, "latest"),
        ({"name": "x", "generation": 3}, "latest"),
        ({"name": "x", "parent_provider_uuid": PARENT}, "1.13"),
        ({"name": "x", "parent_provider_uuid": MISSING}, "latest"),
        ({"name": "x", "parent_provider_uuid": "nope"}, "latest"),
        ({"name": "x", "uuid": PARENT, "parent_provider_uuid": PARENT}, "latest"),
        (["x"], "latest"),
    ],
)
async def test_bad_create_bodies_are_400_and_create_nothing(
    client: httpx.AsyncClient, body: object, version: str
) -> None:
    response = await client.post("/resource_providers", json=body, headers=v(version))
    assert response.status_code == 400
    assert (await client.get("/resource_providers")).json() == {"resource_providers": []}


async def test_create_needs_json(client: httpx.AsyncClient) -> None:
    bad = await client.post(
        "/resource_providers", content=b'{"foo": }', headers={"content-type": "application/json"}
    )
    assert bad.status_code == 400
    wrong = await client.post(
        "/resource_providers", content=b"name", headers={"content-type": "text/plain"}
    )
    assert wrong.status_code == 415


async def test_rename_keeps_the_generation(client: httpx.AsyncClient) -> None:
    await create(client, "before", uuid=PARENT)
    response = await client.put(f"/resource_providers/{PARENT}", json={"name": "after"})
    assert response.status_code == 200
    assert response.json()["name"] == "after"
    assert response.json()["generation"] == 0
    assert response.headers["cache-control"] == "no-cache"
    assert "location" not in response.headers
    assert (await client.get(f"/resource_providers/{PARENT}")).json()["name"] == "after"


async def test_rename_to_an_existing_name_is_409(client: httpx.AsyncClient) -> None:
    await create(client, "one", uuid=PARENT)
    await create(client, "two")
    response = await client.put(f"/resource_providers/{PARENT}", json={"name": "two"})
    assert response.status_code == 409
    assert response.json()["errors"][0]["code"] == "placement.duplicate_name"


@pytest.mark.parametrize(
    "body",
    [
        {"badfield": "x"},
        {"name": "x", "uuid": OTHER},
        {"name": "x", "root_provider_uuid": OTHER},
        {"name": "x" * 201},
    ],
)
async def test_bad_update_bodies_are_400(client: httpx.AsyncClient, body: object) -> None:
    await create(client, "rp", uuid=PARENT)
    response = await client.put(f"/resource_providers/{PARENT}", json=body)
    assert response.status_code == 400
    assert (await client.get(f"/resource_providers/{PARENT}")).json()["name"] == "rp"


async def test_parent_can_be_set_once_before_1_37(client: httpx.AsyncClient) -> None:
    await create(client, "parent", uuid=PARENT)
    await create(client, "other", uuid=OTHER)
    await create(client, "child", uuid=CHILD)
    v136 = v("1.36")
    missing = await client.put(
        f"/resource_providers/{CHILD}",
        json={"name": "child", "parent_provider_uuid": MISSING},
        headers=v136,
    )
    assert missing.status_code == 400
    adopted = await client.put(
        f"/resource_providers/{CHILD}",
        json={"name": "child", "parent_provider_uuid": PARENT},
        headers=v136,
    )
    assert adopted.status_code == 200
    assert adopted.json()["root_provider_uuid"] == PARENT
    for new_parent in (OTHER, None):
        refused = await client.put(
            f"/resource_providers/{CHILD}",
            json={"name": "child", "parent_provider_uuid": new_parent},
            headers=v136,
        )
        assert refused.status_code == 400
    same = await client.put(
        f"/resource_providers/{CHILD}",
        json={"name": "child", "parent_provider_uuid": PARENT},
        headers=v136,
    )
    assert same.status_code == 200


async def test_reparenting_moves_the_subtree_from_1_37(client: httpx.AsyncClient) -> None:
    await create(client, "parent", uuid=PARENT)
    await create(client, "other", uuid=OTHER)
    await create(client, "child", uuid=CHILD, parent_provider_uuid=PARENT)
    grandchild = await create(client, "grandchild", parent_provider_uuid=CHILD)
    moved = await client.put(
        f"/resource_providers/{CHILD}", json={"name": "child", "parent_provider_uuid": OTHER}
    )
    assert moved.status_code == 200
    assert moved.json()["root_provider_uuid"] == OTHER
    below = await client.get(f"/resource_providers/{grandchild['uuid']}")
    assert below.json()["root_provider_uuid"] == OTHER
    assert below.json()["parent_provider_uuid"] == CHILD
    freed = await client.put(
        f"/resource_providers/{CHILD}", json={"name": "child", "parent_provider_uuid": None}
    )
    assert freed.status_code == 200
    assert freed.json()["parent_provider_uuid"] is None
    assert freed.json()["root_provider_uuid"] == CHILD
    below = await client.get(f"/resource_providers/{grandchild['uuid']}")
    assert below.json()["root_provider_uuid"] == CHILD


async def test_a_provider_cannot_become_its_own_ancestor(client: httpx.AsyncClient) -> None:
    await create(client, "parent", uuid=PARENT)
    await create(client, "child", uuid=CHILD, parent_provider_uuid=PARENT)
    for parent in (PARENT, CHILD):
        loop = await client.put(
            f"/resource_providers/{PARENT}", json={"name": "parent", "parent_provider_uuid": parent}
        )
        assert loop.status_code == 400
    shown = await client.get(f"/resource_providers/{PARENT}")
    assert shown.json()["parent_provider_uuid"] is None


async def test_delete(client: httpx.AsyncClient) -> None:
    await create(client, "rp", uuid=PARENT)
    assert (await client.delete(f"/resource_providers/{PARENT}")).status_code == 204
    assert (await client.get(f"/resource_providers/{PARENT}")).status_code == 404


async def test_a_parent_cannot_be_deleted(client: httpx.AsyncClient) -> None:
    await create(client, "parent", uuid=PARENT)
    await create(client, "child", uuid=CHILD, parent_provider_uuid=PARENT)
    response = await client.delete(f"/resource_providers/{PARENT}")
    assert response.status_code == 409
    assert (
        response.json()["errors"][0]["code"] == "placement.resource_provider.cannot_delete_parent"
    )
    assert (await client.delete(f"/resource_providers/{CHILD}")).status_code == 204
    assert (await client.delete(f"/resource_providers/{PARENT}")).status_code == 204


async def test_list_and_simple_filters(client: httpx.AsyncClient) -> None:
    await create(client, "parent", uuid=PARENT)
    await create(client, "child", uuid=CHILD, parent_provider_uuid=PARENT)
    await create(client, "other", uuid=OTHER)

    async def names(query: str, version: str = "latest") -> list[str]:
        response = await client.get(f"/resource_providers{query}", headers=v(version))
        assert response.status_code == 200, response.text
        return sorted(p["name"] for p in response.json()["resource_providers"])

    assert await names("") == ["child", "other", "parent"]
    assert await names("?name=child") == ["child"]
    assert await names(f"?uuid={OTHER}") == ["other"]
    assert await names(f"?uuid={MISSING}") == []
    assert await names(f"?in_tree={CHILD}") == ["child", "parent"]
    assert await names(f"?in_tree={MISSING}") == []
    listed = (await client.get("/resource_providers?name=child")).json()["resource_providers"]
    assert listed == [
        {
            "uuid": CHILD,
            "name": "child",
            "generation": 0,
            "links": links(CHILD, *ALL_RELS),
            "parent_provider_uuid": PARENT,
            "root_provider_uuid": PARENT,
        }
    ]


@pytest.mark.parametrize(
    ("query", "version"),
    [
        ("?uuid=not-a-uuid", "latest"),
        ("?in_tree=not-a-uuid", "latest"),
        ("?nope=1", "latest"),
        ("?in_tree=" + PARENT, "1.13"),
        ("?member_of=" + PARENT, "1.2"),
        ("?resources=VCPU:1", "1.3"),
        ("?required=HW_CPU_X86_AVX", "1.17"),
        ("?name=a&name=b", "latest"),
    ],
)
async def test_bad_list_queries_are_400(
    client: httpx.AsyncClient, query: str, version: str
) -> None:
    response = await client.get(f"/resource_providers{query}", headers=v(version))
    assert response.status_code == 400


async def test_cache_headers_only_from_1_15(client: httpx.AsyncClient) -> None:
    old = await client.get("/resource_providers", headers=v("1.14"))
    assert "cache-control" not in old.headers
    assert "last-modified" not in old.headers
    new = await client.get("/resource_providers", headers=v("1.15"))
    assert new.headers["cache-control"] == "no-cache"
    assert new.headers["last-modified"].endswith("GMT")


AGG1 = "42896e0d-205d-4fe3-bd1e-100924931787"
AGG2 = "5e08ea53-c4c6-448e-9334-ac4953de3cfa"
AGG3 = "11111111-2222-4333-8444-555555555555"


@pytest.fixture
async def three(client: httpx.AsyncClient) -> dict[str, str]:
    """Three providers: a in AGG1 with AVX; b in AGG1+AGG2 with AVX+SSE; c in AGG3, no traits."""
    made = {}
    for name, aggs, traits in (
        ("a", [AGG1], ["HW_CPU_X86_AVX"]),
        ("b", [AGG1, AGG2], ["HW_CPU_X86_AVX", "HW_CPU_X86_SSE"]),
        ("c", [AGG3], []),
    ):
        uuid = (await create(client, name))["uuid"]
        made[name] = uuid
        put = await client.put(
            f"/resource_providers/{uuid}/aggregates",
            json={"aggregates": aggs, "resource_provider_generation": 0},
        )
        assert put.status_code == 200
        put = await client.put(
            f"/resource_providers/{uuid}/traits",
            json={"traits": traits, "resource_provider_generation": 1},
        )
        assert put.status_code == 200
    return made


async def listed(client: httpx.AsyncClient, query: str, version: str = "latest") -> list[str]:
    response = await client.get(f"/resource_providers?{query}", headers=v(version))
    assert response.status_code == 200, response.text
    return sorted(p["name"] for p in response.json()["resource_providers"])


@pytest.mark.parametrize(
    ("query", "version", "names"),
    [
        (f"member_of={AGG1}", "1.3", ["a", "b"]),
        (f"member_of={AGG2}", "1.3", ["b"]),
        (f"member_of=in:{AGG2},{AGG3}", "1.3", ["b", "c"]),
        ("member_of=" + "9" * 8 + "-9999-4999-8999-" + "9" * 12, "1.3", []),
        (f"member_of={AGG1}&member_of={AGG2}", "1.24", ["b"]),
        (f"member_of={AGG1}&member_of=in:{AGG2},{AGG3}", "1.24", ["b"]),
        (f"member_of=!{AGG2}", "1.32", ["a", "c"]),
        (f"member_of=!in:{AGG2},{AGG3}", "1.32", ["a"]),
        (f"member_of={AGG1}&member_of=!{AGG2}", "1.32", ["a"]),
        ("required=HW_CPU_X86_AVX", "1.18", ["a", "b"]),
        ("required=HW_CPU_X86_AVX,HW_CPU_X86_SSE", "1.18", ["b"]),
        ("required=HW_CPU_X86_SSE3", "1.18", []),
        ("required=!HW_CPU_X86_SSE", "1.22", ["a", "c"]),
        ("required=HW_CPU_X86_AVX,!HW_CPU_X86_SSE", "1.22", ["a"]),
        ("required=!HW_CPU_X86_AVX,!HW_CPU_X86_SSE", "1.22", ["c"]),
        ("required=in:HW_CPU_X86_SSE,HW_CPU_X86_SSE3", "1.39", ["b"]),
        ("required=HW_CPU_X86_AVX&required=!HW_CPU_X86_SSE", "1.39", ["a"]),
        # Before 1.39 a repeated `required` means its last value, as in Placement.
        ("required=HW_CPU_X86_SSE&required=HW_CPU_X86_AVX", "1.38", ["a", "b"]),
        (f"member_of={AGG1}&required=!HW_CPU_X86_SSE", "1.32", ["a"]),
    ],
)
async def test_member_of_and_required_filters(
    client: httpx.AsyncClient, three: dict[str, str], query: str, version: str, names: list[str]
) -> None:
    assert await listed(client, query, version) == names


@pytest.mark.parametrize(
    ("query", "version"),
    [
        (f"member_of={AGG1}&member_of={AGG2}", "1.23"),
        (f"member_of=!{AGG1}", "1.31"),
        ("member_of=not-a-uuid", "1.3"),
        (f"member_of={AGG1},{AGG2}", "1.3"),
        ("member_of=in:", "1.3"),
        ("required=", "1.18"),
        ("required=HW_CPU_X86_AVX,,HW_CPU_X86_SSE", "1.18"),
        ("required=HW_CPU_X86_AVX,BOGUS_TRAIT", "1.18"),
        ("required=!BOGUS_TRAIT", "1.22"),
        ("required=!HW_CPU_X86_AVX", "1.21"),
        ("required=in:HW_CPU_X86_AVX,HW_CPU_X86_SSE", "1.38"),
        ("resources=VCPU", "1.4"),
        ("resources=VCPU:0", "1.4"),
        ("resources=VCPU:x", "1.4"),
        ("resources=", "1.4"),
        ("resources=NO_SUCH_CLASS:1", "1.4"),
        ("resources=VCPU:1&resources=VCPU:2", "1.4"),
    ],
)
async def test_bad_filter_values_are_400(
    client: httpx.AsyncClient, three: dict[str, str], query: str, version: str
) -> None:
    response = await client.get(f"/resource_providers?{query}", headers=v(version))
    assert response.status_code == 400
    code = response.json()["errors"][0]["code"]
    if "BOGUS" in query or "NO_SUCH" in query:
        assert code == "placement.undefined_code"  # well formed, but no such trait or class
    elif query.count("resources=") > 1:
        assert code == "placement.query.duplicate_key"
    else:
        assert code == "placement.query.bad_value"


async def test_resources_filter_uses_capacity_units_and_steps(client: httpx.AsyncClient) -> None:
    inventories = {
        "small": {"VCPU": {"total": 4}, "MEMORY_MB": {"total": 1024, "reserved": 512}},
        "big": {
            "VCPU": {"total": 8, "allocation_ratio": 2.0, "max_unit": 8},
            "MEMORY_MB": {"total": 8192, "step_size": 256, "min_unit": 512},
        },
        "disk": {"DISK_GB": {"total": 100}},
    }
    for name, inventory in inventories.items():
        uuid = (await create(client, name))["uuid"]
        put = await client.put(
            f"/resource_providers/{uuid}/inventories",
            json={"inventories": inventory, "resource_provider_generation": 0},
        )
        assert put.status_code == 200
    assert await listed(client, "resources=VCPU:4") == ["big", "small"]
    # 16 fits big's capacity ((8-0)*2) but not its max_unit (8).
    assert await listed(client, "resources=VCPU:9") == []
    assert await listed(client, "resources=MEMORY_MB:512") == ["big", "small"]
    assert await listed(client, "resources=MEMORY_MB:513") == []
    assert await listed(client, "resources=MEMORY_MB:768") == ["big"]
    assert await listed(client, "resources=MEMORY_MB:256") == ["small"]
    assert await listed(client, "resources=VCPU:1,DISK_GB:1") == []
    assert await listed(client, "resources=DISK_GB:100&name=disk") == ["disk"]


async def test_filters_combine_with_in_tree(
    client: httpx.AsyncClient, three: dict[str, str]
) -> None:
    child = await create(client, "a-child", parent_provider_uuid=three["a"])
    await client.put(
        f"/resource_providers/{child['uuid']}/traits",
        json={"traits": ["HW_CPU_X86_AVX"], "resource_provider_generation": 0},
    )
    assert await listed(client, f"in_tree={three['a']}") == ["a", "a-child"]
    assert await listed(client, f"in_tree={child['uuid']}&required=HW_CPU_X86_AVX") == [
        "a",
        "a-child",
    ]
    assert await listed(client, f"in_tree={three['a']}&member_of={AGG1}") == ["a"]


async def test_allocations_link_from_1_11(client: httpx.AsyncClient) -> None:
    await create(client, "rp", uuid=PARENT)
    before = await client.get(f"/resource_providers/{PARENT}", headers=v("1.10"))
    assert before.json()["links"] == links(PARENT, "inventories", "usages", "aggregates", "traits")
    after = await client.get(f"/resource_providers?uuid={PARENT}", headers=v("1.11"))
    assert after.json()["resource_providers"][0]["links"] == links(PARENT, *ALL_RELS)
