"""GET /allocation_candidates: every query feature against a hand-built cloud.

The cloud (built through the API):

    cn1 (root, HW_CPU_X86_AVX2, aggregate A)     cn2 (VCPU 4, MEMORY_MB 4096, DISK_GB 100,
     +- numa0 (VCPU 4, MEMORY_MB 2048)                 CUSTOM_GOLD, aggregate B)
     |   +- pf0 (SRIOV_NET_VF 4, CUSTOM_PHYSNET_A)
     +- numa1 (VCPU 4, MEMORY_MB 2048, CUSTOM_FAST)   ss (DISK_GB 1000, MISC_SHARES_VIA_AGGREGATE,
         +- pf1 (SRIOV_NET_VF 4, CUSTOM_PHYSNET_B)        aggregate A): shared with cn1's tree
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.api.candidates_layouts import Layout, agg, canonical

A, B = agg("A"), agg("B")
URL = "/allocation_candidates"


def v(version: str) -> dict[str, str]:
    return {"openstack-api-version": f"placement {version}"}


@pytest.fixture
async def cloud(client: httpx.AsyncClient) -> Layout:
    lay = Layout(client)
    await lay.provider("cn1", traits=["HW_CPU_X86_AVX2"], aggregates=[A])
    await lay.provider("numa0", parent="cn1", inventory={"VCPU": 4, "MEMORY_MB": 2048})
    await lay.provider(
        "numa1",
        parent="cn1",
        inventory={"VCPU": 4, "MEMORY_MB": 2048},
        traits=["CUSTOM_FAST"],
    )
    await lay.provider(
        "pf0", parent="numa0", inventory={"SRIOV_NET_VF": 4}, traits=["CUSTOM_PHYSNET_A"]
    )
    await lay.provider(
        "pf1", parent="numa1", inventory={"SRIOV_NET_VF": 4}, traits=["CUSTOM_PHYSNET_B"]
    )
    await lay.provider(
        "cn2",
        inventory={"VCPU": 4, "MEMORY_MB": 4096, "DISK_GB": 100},
        traits=["CUSTOM_GOLD"],
        aggregates=[B],
    )
    await lay.provider(
        "ss",
        inventory={"DISK_GB": 1000},
        traits=["MISC_SHARES_VIA_AGGREGATE"],
        aggregates=[A],
    )
    return lay


async def names(
    client: httpx.AsyncClient, lay: Layout, query: str, version: str = "latest"
) -> list[dict[str, dict[str, int]]]:
    response = await client.get(f"{URL}?{query}", headers=v(version))
    assert response.status_code == 200, response.text
    return lay.named_all(response.json())


def cands(*items: dict[str, dict[str, int]]) -> list[dict[str, dict[str, int]]]:
    return sorted(items, key=canonical)


# --- resources, nesting and sharing -------------------------------------------------------


async def test_resources_spread_over_a_tree(client: httpx.AsyncClient, cloud: Layout) -> None:
    got = await names(client, cloud, "resources=VCPU:1,MEMORY_MB:512")
    assert got == cands(
        {"numa0": {"VCPU": 1, "MEMORY_MB": 512}},
        {"numa1": {"VCPU": 1, "MEMORY_MB": 512}},
        {"numa0": {"VCPU": 1}, "numa1": {"MEMORY_MB": 512}},
        {"numa1": {"VCPU": 1}, "numa0": {"MEMORY_MB": 512}},
        {"cn2": {"VCPU": 1, "MEMORY_MB": 512}},
    )


async def test_before_1_29_one_provider_per_tree(client: httpx.AsyncClient, cloud: Layout) -> None:
    response = await client.get(f"{URL}?resources=VCPU:1,MEMORY_MB:512", headers=v("1.28"))
    body = response.json()
    assert cloud.named_all(body) == cands(
        {"numa0": {"VCPU": 1, "MEMORY_MB": 512}},
        {"numa1": {"VCPU": 1, "MEMORY_MB": 512}},
        {"cn2": {"VCPU": 1, "MEMORY_MB": 512}},
    )
    # Only the providers in the candidates are summarised, without tree uuids.
    summaries = body["provider_summaries"]
    assert {cloud.names[u] for u in summaries} == {"numa0", "numa1", "cn2"}
    assert set(summaries[cloud.uuids["cn2"]]) == {"resources", "traits"}


async def test_sharing_provider_in_an_aggregate(client: httpx.AsyncClient, cloud: Layout) -> None:
    got = await names(client, cloud, "resources=VCPU:1,DISK_GB:10")
    assert got == cands(
        {"numa0": {"VCPU": 1}, "ss": {"DISK_GB": 10}},
        {"numa1": {"VCPU": 1}, "ss": {"DISK_GB": 10}},
        {"cn2": {"VCPU": 1, "DISK_GB": 10}},
    )
    # A sharing provider alone is one candidate, however many trees it serves.
    assert await names(client, cloud, "resources=DISK_GB:200") == cands({"ss": {"DISK_GB": 200}})


async def test_capacity_counts_usage(client: httpx.AsyncClient, cloud: Layout) -> None:
    consumer = "7f6b5d0e-2a4a-4f3e-9d5b-3f1e2d4c5b6a"
    put = await client.put(
        f"/allocations/{consumer}",
        json={
            "allocations": {cloud.uuids["numa0"]: {"resources": {"VCPU": 4}}},
            "project_id": "p",
            "user_id": "u",
            "consumer_generation": None,
            "consumer_type": "INSTANCE",
        },
    )
    assert put.status_code == 204, put.text
    got = await names(client, cloud, "resources=VCPU:1")
    assert got == cands({"numa1": {"VCPU": 1}}, {"cn2": {"VCPU": 1}})
    summary = (await client.get(f"{URL}?resources=VCPU:1")).json()["provider_summaries"]
    assert summary[cloud.uuids["numa0"]]["resources"]["VCPU"] == {"capacity": 4, "used": 4}


async def test_amounts_follow_inventory_rules(client: httpx.AsyncClient) -> None:
    lay = Layout(client)
    await lay.provider(
        "rp",
        inventory={
            "VCPU": {"total": 16, "reserved": 4, "allocation_ratio": 2.0, "max_unit": 8},
            "MEMORY_MB": {"total": 1024, "min_unit": 128, "step_size": 128},
        },
    )
    assert await names(client, lay, "resources=VCPU:8") == cands({"rp": {"VCPU": 8}})
    assert await names(client, lay, "resources=VCPU:9") == []  # above max_unit
    assert await names(client, lay, "resources=MEMORY_MB:64") == []  # below min_unit
    assert await names(client, lay, "resources=MEMORY_MB:200") == []  # not a step
    assert await names(client, lay, "resources=MEMORY_MB:256") == cands({"rp": {"MEMORY_MB": 256}})


# --- traits -------------------------------------------------------------------------------


async def test_required_forbidden_and_any_of_traits(
    client: httpx.AsyncClient, cloud: Layout
) -> None:
    assert await names(client, cloud, "resources=VCPU:1&required=CUSTOM_FAST") == cands(
        {"numa1": {"VCPU": 1}}
    )
    assert await names(client, cloud, "resources=VCPU:1&required=!CUSTOM_FAST") == cands(
        {"numa0": {"VCPU": 1}}, {"cn2": {"VCPU": 1}}
    )
    any_of = "resources=VCPU:1&required=in:CUSTOM_FAST,CUSTOM_GOLD"
    assert await names(client, cloud, any_of) == cands({"numa1": {"VCPU": 1}}, {"cn2": {"VCPU": 1}})
    # From 1.39 required may repeat, each value adding a condition.
    both = "resources=VCPU:1&required=in:CUSTOM_FAST,CUSTOM_GOLD&required=!CUSTOM_GOLD"
    assert await names(client, cloud, both) == cands({"numa1": {"VCPU": 1}})


async def test_unsuffixed_traits_come_from_the_providers_used(
    client: httpx.AsyncClient, cloud: Layout
) -> None:
    # CUSTOM_FAST is on numa1 only: memory may come from numa0 when numa1 gives the VCPU.
    got = await names(client, cloud, "resources=VCPU:1,MEMORY_MB:512&required=CUSTOM_FAST")
    assert got == cands(
        {"numa1": {"VCPU": 1, "MEMORY_MB": 512}},
        {"numa1": {"VCPU": 1}, "numa0": {"MEMORY_MB": 512}},
        {"numa0": {"VCPU": 1}, "numa1": {"MEMORY_MB": 512}},
    )


async def test_root_required(client: httpx.AsyncClient, cloud: Layout) -> None:
    assert await names(client, cloud, "resources=VCPU:1&root_required=CUSTOM_GOLD") == cands(
        {"cn2": {"VCPU": 1}}
    )
    assert await names(client, cloud, "resources=VCPU:1&root_required=HW_CPU_X86_AVX2") == cands(
        {"numa0": {"VCPU": 1}}, {"numa1": {"VCPU": 1}}
    )
    assert await names(client, cloud, "resources=VCPU:1&root_required=!CUSTOM_GOLD") == cands(
        {"numa0": {"VCPU": 1}}, {"numa1": {"VCPU": 1}}
    )


async def test_trees_between_the_wanted_ones_are_not_offered(client: httpx.AsyncClient) -> None:
    # Trees created one after the other are read by id range; those in between that the
    # request excludes must neither be offered nor summarised.
    lay = Layout(client)
    for i in range(6):
        traits = ["HW_CPU_X86_AVX2"] if i % 2 == 0 else []
        await lay.provider(f"cn{i}", traits=traits)
        await lay.provider(f"cn{i}_numa", parent=f"cn{i}", inventory={"PCPU": 4})
    query = "resources=PCPU:1&root_required=HW_CPU_X86_AVX2"
    response = await client.get(f"{URL}?{query}", headers=v("latest"))
    assert lay.named_all(response.json()) == cands(
        {"cn0_numa": {"PCPU": 1}}, {"cn2_numa": {"PCPU": 1}}, {"cn4_numa": {"PCPU": 1}}
    )
    summarised = {lay.names[uuid] for uuid in response.json()["provider_summaries"]}
    assert summarised == {"cn0", "cn0_numa", "cn2", "cn2_numa", "cn4", "cn4_numa"}


# --- aggregates and trees -----------------------------------------------------------------


async def test_member_of(client: httpx.AsyncClient, cloud: Layout) -> None:
    # The unsuffixed group: a provider in the aggregate, or in a tree whose root is.
    assert await names(client, cloud, f"resources=VCPU:1&member_of={A}") == cands(
        {"numa0": {"VCPU": 1}}, {"numa1": {"VCPU": 1}}
    )
    assert await names(client, cloud, f"resources=VCPU:1&member_of=in:{A},{B}") == cands(
        {"numa0": {"VCPU": 1}}, {"numa1": {"VCPU": 1}}, {"cn2": {"VCPU": 1}}
    )
    assert await names(client, cloud, f"resources=VCPU:1&member_of=!{A}") == cands(
        {"cn2": {"VCPU": 1}}
    )
    # Repeated (1.24+): every one must match.
    assert await names(client, cloud, f"resources=VCPU:1&member_of={A}&member_of={B}") == []
    unknown = "resources=VCPU:1&member_of=1e9f8c2d-1111-4c1b-9a55-000000000000"
    assert await names(client, cloud, unknown) == []


async def test_in_tree(client: httpx.AsyncClient, cloud: Layout) -> None:
    expected = cands({"numa0": {"VCPU": 1}}, {"numa1": {"VCPU": 1}})
    assert await names(client, cloud, f"resources=VCPU:1&in_tree={cloud.uuids['cn1']}") == expected
    # Any provider of the tree names the whole tree.
    assert await names(client, cloud, f"resources=VCPU:1&in_tree={cloud.uuids['pf0']}") == expected
    # A tree without the resource, or sharing outside the tree: nothing.
    assert await names(client, cloud, f"resources=DISK_GB:1&in_tree={cloud.uuids['cn1']}") == []
    missing = "resources=VCPU:1&in_tree=1e9f8c2d-1111-4c1b-9a55-000000000000"
    assert await names(client, cloud, missing) == []
    # A granular group pinned to a tree, the other group free.
    q = f"resources1=VCPU:1&in_tree1={cloud.uuids['cn2']}&resources2=DISK_GB:5&group_policy=none"
    assert await names(client, cloud, q) == cands({"cn2": {"VCPU": 1, "DISK_GB": 5}})


# --- granular groups ----------------------------------------------------------------------


async def test_granular_groups_with_mappings(client: httpx.AsyncClient, cloud: Layout) -> None:
    q = "resources=VCPU:1&resources_NET=SRIOV_NET_VF:1&required_NET=CUSTOM_PHYSNET_A"
    response = await client.get(f"{URL}?{q}")
    body = response.json()
    assert cloud.named_all(body) == cands(
        {"numa0": {"VCPU": 1}, "pf0": {"SRIOV_NET_VF": 1}},
        {"numa1": {"VCPU": 1}, "pf0": {"SRIOV_NET_VF": 1}},
    )
    mappings = sorted(
        (sorted(cloud.mappings(a).items()) for a in body["allocation_requests"]), key=str
    )
    assert mappings == [
        [("", ["numa0"]), ("_NET", ["pf0"])],
        [("", ["numa1"]), ("_NET", ["pf0"])],
    ]


async def test_group_policy(client: httpx.AsyncClient, cloud: Layout) -> None:
    isolate = "resources1=VCPU:1&resources2=VCPU:1&group_policy=isolate"
    assert await names(client, cloud, isolate) == cands(
        {"numa0": {"VCPU": 1}, "numa1": {"VCPU": 1}},
        {"numa0": {"VCPU": 1}, "numa1": {"VCPU": 1}},
    )
    none = "resources1=VCPU:1&resources2=VCPU:1&group_policy=none"
    assert await names(client, cloud, none) == cands(
        {"numa0": {"VCPU": 2}},
        {"numa1": {"VCPU": 2}},
        {"numa0": {"VCPU": 1}, "numa1": {"VCPU": 1}},
        {"numa0": {"VCPU": 1}, "numa1": {"VCPU": 1}},
        {"cn2": {"VCPU": 2}},
    )
    # Groups add up against capacity: two groups of 3 VCPU fit nowhere but across NUMA nodes.
    tight = "resources1=VCPU:3&resources2=VCPU:3&group_policy=none"
    assert await names(client, cloud, tight) == cands(
        {"numa0": {"VCPU": 3}, "numa1": {"VCPU": 3}},
        {"numa0": {"VCPU": 3}, "numa1": {"VCPU": 3}},
    )


async def test_numbered_suffixes_before_1_33(client: httpx.AsyncClient, cloud: Layout) -> None:
    got = await names(client, cloud, "resources1=SRIOV_NET_VF:1&required1=CUSTOM_PHYSNET_B", "1.25")
    assert got == cands({"pf1": {"SRIOV_NET_VF": 1}})
    bad = await client.get(f"{URL}?resources_X=VCPU:1", headers=v("1.32"))
    assert bad.status_code == 400


async def test_same_subtree(client: httpx.AsyncClient, cloud: Layout) -> None:
    q = "resources_VF=SRIOV_NET_VF:1&resources_CPU=VCPU:1&same_subtree=_VF,_CPU&group_policy=none"
    assert await names(client, cloud, q) == cands(
        {"pf0": {"SRIOV_NET_VF": 1}, "numa0": {"VCPU": 1}},
        {"pf1": {"SRIOV_NET_VF": 1}, "numa1": {"VCPU": 1}},
    )
    # A resourceless group names where the others must be: under the CUSTOM_FAST NUMA node.
    q = (
        "required_NUMA=CUSTOM_FAST&resources_VF=SRIOV_NET_VF:1"
        "&same_subtree=_NUMA,_VF&group_policy=none"
    )
    response = await client.get(f"{URL}?{q}")
    body = response.json()
    assert cloud.named_all(body) == cands({"pf1": {"SRIOV_NET_VF": 1}})
    assert cloud.mappings(body["allocation_requests"][0]) == {"_NUMA": ["numa1"], "_VF": ["pf1"]}


# --- limit, summaries and formats ---------------------------------------------------------


async def test_limit_trims_candidates_and_summaries(
    client: httpx.AsyncClient, cloud: Layout
) -> None:
    response = await client.get(f"{URL}?resources=VCPU:1&limit=1")
    body = response.json()
    assert len(body["allocation_requests"]) == 1
    (provider,) = body["allocation_requests"][0]["allocations"]
    root = body["provider_summaries"][provider]["root_provider_uuid"]
    assert {s["root_provider_uuid"] for s in body["provider_summaries"].values()} == {root}


async def test_provider_summaries_latest(client: httpx.AsyncClient, cloud: Layout) -> None:
    body = (await client.get(f"{URL}?resources=SRIOV_NET_VF:1&required=CUSTOM_PHYSNET_A")).json()
    summaries = body["provider_summaries"]
    # Every provider of the tree used, with all its inventories and traits.
    assert {cloud.names[u] for u in summaries} == {"cn1", "numa0", "numa1", "pf0", "pf1"}
    u = cloud.uuids
    assert summaries[u["numa1"]] == {
        "resources": {
            "VCPU": {"capacity": 4, "used": 0},
            "MEMORY_MB": {"capacity": 2048, "used": 0},
        },
        "traits": ["CUSTOM_FAST"],
        "parent_provider_uuid": u["cn1"],
        "root_provider_uuid": u["cn1"],
    }
    assert summaries[u["cn1"]] == {
        "resources": {},
        "traits": ["HW_CPU_X86_AVX2"],
        "parent_provider_uuid": None,
        "root_provider_uuid": u["cn1"],
    }
    assert response_has_no_cache(await client.get(f"{URL}?resources=VCPU:1"))


def response_has_no_cache(response: httpx.Response) -> bool:
    return response.headers["cache-control"] == "no-cache" and "last-modified" in response.headers


async def test_summaries_before_1_27_show_requested_classes(
    client: httpx.AsyncClient, cloud: Layout
) -> None:
    body = (await client.get(f"{URL}?resources=DISK_GB:1", headers=v("1.26"))).json()
    assert body["provider_summaries"][cloud.uuids["cn2"]] == {
        "resources": {"DISK_GB": {"capacity": 100, "used": 0}},
        "traits": ["CUSTOM_GOLD"],
    }


@pytest.mark.parametrize(
    ("version", "shape"),
    [("1.10", "list"), ("1.12", "dict"), ("1.33", "dict"), ("1.34", "mappings")],
)
async def test_allocation_request_formats(
    client: httpx.AsyncClient, cloud: Layout, version: str, shape: str
) -> None:
    response = await client.get(f"{URL}?resources=VCPU:1,DISK_GB:10", headers=v(version))
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    cn2 = cloud.uuids["cn2"]
    (request,) = [
        a
        for a in body["allocation_requests"]
        if cn2 in str(a["allocations"]) and "ss" not in str(a)
    ]
    if shape == "list":
        assert request == {
            "allocations": [
                {"resource_provider": {"uuid": cn2}, "resources": {"VCPU": 1, "DISK_GB": 10}}
            ]
        }
        assert set(body["provider_summaries"][cn2]) == {"resources"}
    elif shape == "dict":
        assert request == {"allocations": {cn2: {"resources": {"VCPU": 1, "DISK_GB": 10}}}}
    else:
        assert request == {
            "allocations": {cn2: {"resources": {"VCPU": 1, "DISK_GB": 10}}},
            "mappings": {"": [cn2]},
        }


async def test_route_exists_from_1_10(client: httpx.AsyncClient) -> None:
    response = await client.get(f"{URL}?resources=VCPU:1", headers=v("1.9"))
    assert response.status_code == 404


# --- bad input ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "version", "code"),
    [
        ("", "1.24", "placement.undefined_code"),
        ("resources=", "latest", "placement.undefined_code"),
        ("resources=VCPU", "latest", "placement.undefined_code"),
        ("resources=VCPU:0", "latest", "placement.undefined_code"),
        ("resources=VCPU:x", "latest", "placement.undefined_code"),
        ("resources=CUSTOM_NOPE:1", "latest", "placement.undefined_code"),
        ("resources=VCPU:1&required=CUSTOM_NOPE", "latest", "placement.undefined_code"),
        (
            "resources=VCPU:1&required=CUSTOM_FAST,!CUSTOM_FAST",
            "latest",
            "placement.undefined_code",
        ),
        ("resources=VCPU:1&required=!CUSTOM_FAST", "1.21", "placement.undefined_code"),
        ("resources=VCPU:1&required=in:CUSTOM_FAST", "1.38", "placement.undefined_code"),
        ("resources=VCPU:1&member_of=nope", "latest", "placement.undefined_code"),
        ("resources=VCPU:1&limit=0", "latest", "placement.undefined_code"),
        ("resources=VCPU:1&limit=ten", "latest", "placement.undefined_code"),
        ("resources1=VCPU:1&resources2=VCPU:1", "latest", "placement.undefined_code"),
        (
            "resources1=VCPU:1&resources2=VCPU:1&group_policy=x",
            "latest",
            "placement.undefined_code",
        ),
        ("resources=VCPU:1&required1=CUSTOM_FAST", "1.35", "placement.undefined_code"),
        ("resources=VCPU:1&required1=CUSTOM_FAST", "latest", "placement.query.bad_value"),
        ("required_A=CUSTOM_FAST&same_subtree=_A", "latest", "placement.query.missing_value"),
        ("resources_A=VCPU:1&same_subtree=_A,_B", "latest", "placement.query.bad_value"),
        (
            "resources=VCPU:1&root_required=A&root_required=B",
            "latest",
            "placement.query.duplicate_key",
        ),
        ("resources=VCPU:1&resources=VCPU:2", "latest", "placement.query.duplicate_key"),
        ("resources=VCPU:1&bogus=1", "latest", "placement.undefined_code"),
    ],
)
async def test_bad_queries_are_400(
    client: httpx.AsyncClient, cloud: Layout, query: str, version: str, code: str
) -> None:
    response = await client.get(f"{URL}?{query}", headers=v(version))
    assert response.status_code == 400, response.text
    assert response.json()["errors"][0]["code"] == code
