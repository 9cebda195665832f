"""GET /allocation_candidates: bounded work, ownership, and candidates that claims accept."""

from __future__ import annotations

import random
from collections.abc import Callable

import httpx
import pytest
from fastapi import FastAPI

from tests.api.candidates_layouts import Layout, agg
from tests.conftest import PROJECT_A, AppFactory, make_client

URL = "/allocation_candidates"
EIGHT_GROUPS = "&".join(f"resources{i}=CUSTOM_UNIT:1" for i in range(1, 9))


async def eight_single_unit_providers(client: httpx.AsyncClient) -> Layout:
    lay = Layout(client)
    await client.put("/resource_classes/CUSTOM_UNIT")
    await lay.provider("host")
    for i in range(8):
        await lay.provider(f"unit{i}", parent="host", inventory={"CUSTOM_UNIT": 1})
    return lay


async def test_eight_groups_over_eight_units_stop_at_the_cap(
    client: httpx.AsyncClient, app_factory: AppFactory, tokens: dict[str, str]
) -> None:
    """8! = 40,320 valid candidates (8^8 combinations): the search builds only `cap` of them."""
    lay = await eight_single_unit_providers(client)
    async with (
        app_factory(candidates_max=100) as capped,
        make_client(capped, dict(client.headers)) as c,
    ):
        response = await c.get(f"{URL}?{EIGHT_GROUPS}&group_policy=none")
        limited = await c.get(f"{URL}?{EIGHT_GROUPS}&group_policy=none&limit=7")
    assert response.status_code == 200
    requests = response.json()["allocation_requests"]
    assert len(requests) == 100
    for request in requests:
        # Every candidate uses each unit once: none exceeds a capacity of 1.
        assert lay.named(request) == {f"unit{i}": {"CUSTOM_UNIT": 1} for i in range(8)}
    assert len({str(sorted(r["mappings"].items())) for r in requests}) == 100
    assert len(limited.json()["allocation_requests"]) == 7


async def test_more_groups_than_units_is_empty(client: httpx.AsyncClient) -> None:
    await eight_single_unit_providers(client)
    nine = f"{EIGHT_GROUPS}&resources9=CUSTOM_UNIT:1&group_policy=none"
    response = await client.get(f"{URL}?{nine}")
    assert response.json() == {"allocation_requests": [], "provider_summaries": {}}


async def test_limit_spreads_over_identical_hosts(client: httpx.AsyncClient, app: FastAPI) -> None:
    lay = Layout(client)
    for i in range(6):
        await lay.provider(f"host{i}", inventory={"VCPU": 8})
    body = (
        await client.get(f"{URL}?resources1=VCPU:1&resources2=VCPU:1&group_policy=none&limit=3")
    ).json()
    hosts = {lay.names[u] for r in body["allocation_requests"] for u in r["allocations"]}
    assert len(hosts) == 3  # breadth-first: one candidate from each of three hosts
    assert {lay.names[u] for u in body["provider_summaries"]} == hosts


async def test_a_member_sees_only_visible_providers(
    client: httpx.AsyncClient, as_: Callable[..., dict[str, str]]
) -> None:
    admin = Layout(client)
    await admin.provider("public", inventory={"VCPU": 4}, aggregates=[agg("S")])
    await admin.provider(
        "disk_a",
        inventory={"DISK_GB": 100},
        traits=["MISC_SHARES_VIA_AGGREGATE"],
        aggregates=[agg("S")],
        owner=PROJECT_A,
    )
    a = Layout(client, as_("member_a"))
    await a.provider("host_a", inventory={"VCPU": 4})
    b = Layout(client, as_("member_b"))
    await b.provider("host_b", inventory={"VCPU": 4})
    names = {**admin.names, **a.names, **b.names}

    async def seen(who: str, query: str) -> set[str]:
        response = await client.get(f"{URL}?{query}", headers=as_(who))
        assert response.status_code == 200, response.text
        body = response.json()
        used = {names[u] for r in body["allocation_requests"] for u in r["allocations"]}
        assert {names[u] for u in body["provider_summaries"]} == used
        return used

    assert await seen("member_b", "resources=VCPU:1") == {"public", "host_b"}
    assert await seen("reader_a", "resources=VCPU:1") == {"public", "host_a"}
    assert await seen("admin", "resources=VCPU:1") == {"public", "host_a", "host_b"}
    # Another project's sharing provider is invisible, so its disk is not offered.
    assert await seen("member_b", "resources=VCPU:1,DISK_GB:10") == set()
    assert await seen("member_a", "resources=VCPU:1,DISK_GB:10") == {"public", "disk_a"}
    assert await seen("member_b", f"resources=VCPU:1&in_tree={a.uuids['host_a']}") == set()


async def random_cloud(client: httpx.AsyncClient, rng: random.Random) -> Layout:
    lay = Layout(client)
    for h in range(3):
        host = f"cn{h}"
        await lay.provider(host, aggregates=[agg(f"rack{h % 2}")], traits=["HW_CPU_X86_AVX2"])
        for n in range(2):
            await lay.provider(
                f"{host}_numa{n}",
                parent=host,
                inventory={
                    "VCPU": {
                        "total": rng.randint(2, 8),
                        "reserved": rng.randint(0, 1),
                        "allocation_ratio": rng.choice([1.0, 1.5, 4.0]),
                        "max_unit": rng.randint(2, 6),
                    },
                    "MEMORY_MB": {
                        "total": 4096,
                        "min_unit": 256,
                        "step_size": rng.choice([256, 512]),
                        "reserved": rng.choice([0, 512]),
                    },
                },
            )
            await lay.provider(
                f"{host}_pf{n}",
                parent=f"{host}_numa{n}",
                inventory={"SRIOV_NET_VF": {"total": rng.randint(1, 4), "max_unit": 2}},
                traits=[rng.choice(["CUSTOM_PHYSNET_A", "CUSTOM_PHYSNET_B"])],
            )
    await lay.provider(
        "shared_disk",
        inventory={"DISK_GB": {"total": 500, "step_size": 10, "min_unit": 10}},
        traits=["MISC_SHARES_VIA_AGGREGATE"],
        aggregates=[agg("rack0")],
    )
    return lay


def random_query(rng: random.Random) -> str:
    parts = [f"resources=VCPU:{rng.randint(1, 6)},MEMORY_MB:{rng.choice([256, 512, 1024, 1536])}"]
    if rng.random() < 0.5:
        parts[0] += f",DISK_GB:{rng.choice([10, 20, 55])}"
    groups = rng.randint(0, 3)
    for g in range(1, groups + 1):
        parts.append(f"resources{g}=SRIOV_NET_VF:{rng.randint(1, 2)}")
        if rng.random() < 0.5:
            parts.append(f"required{g}={rng.choice(['CUSTOM_PHYSNET_A', '!CUSTOM_PHYSNET_B'])}")
    if rng.random() < 0.3:
        parts.append(f"resources9=VCPU:{rng.randint(1, 4)}")
        groups += 1
    if groups > 1:
        parts.append(f"group_policy={rng.choice(['none', 'isolate'])}")
    if rng.random() < 0.3:
        parts.append(f"member_of={agg('rack0')}")
    return "&".join(parts)


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_every_candidate_is_accepted_by_a_claim(client: httpx.AsyncClient, seed: int) -> None:
    """Property: on an otherwise idle database, PUT /allocations accepts every candidate."""
    rng = random.Random(seed)
    await random_cloud(client, rng)
    consumer = "5b0c7c8e-6f0d-4d8e-9f1a-2b3c4d5e6f70"
    claimed = 0
    for _ in range(12):
        query = random_query(rng)
        response = await client.get(f"{URL}?{query}")
        assert response.status_code == 200, (query, response.text)
        for request in response.json()["allocation_requests"]:
            put = await client.put(
                f"/allocations/{consumer}",
                json={
                    "allocations": request["allocations"],
                    "project_id": "p",
                    "user_id": "u",
                    "consumer_generation": None,
                    "consumer_type": "INSTANCE",
                },
            )
            assert put.status_code == 204, (query, request, put.text)
            assert (await client.delete(f"/allocations/{consumer}")).status_code == 204
            claimed += 1
    assert claimed > 0
