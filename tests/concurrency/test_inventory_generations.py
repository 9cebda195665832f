"""Many clients replace one provider's inventory with the same generation at the same moment:
exactly one wins, every other one gets 409 placement.concurrent_update, and what is stored is
the winner's inventory, at the next generation.

And many clients re-parent providers of one set at once, some of them into loops: whatever
is accepted, the result is a forest (no loops) in which every provider names its real root.

Real `allot serve` processes (two workers) on PostgreSQL (a database of its own) and on SQLite.
"""

from __future__ import annotations

import asyncio
import random
import tempfile
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.concurrency import servers
from tests.concurrency.servers import allot_serve
from tests.conftest import assert_consistent, auth, mint

pytestmark = pytest.mark.slow

PORTS = range(8100, 8200)  # this suite's port range on the shared machine
CLIENTS = 24
ROUNDS = 3
HEADERS = {"openstack-api-version": "placement latest"}


def _inventory(client_index: int, round_index: int) -> dict[str, Any]:
    """Each client's own inventory; a class appears or goes, so inserts and deletes race too."""
    inventory: dict[str, Any] = {"VCPU": {"total": 100 + client_index, "reserved": round_index}}
    if (client_index + round_index) % 2:
        inventory["MEMORY_MB"] = {"total": 1024 * (client_index + 1), "step_size": 256}
    return inventory


async def _put_when_started(
    client: httpx.AsyncClient, url: str, start: asyncio.Event, body: dict[str, Any]
) -> httpx.Response:
    await start.wait()
    return await client.put(url, json=body)


async def _round(clients: list[httpx.AsyncClient], url: str, generation: int) -> None:
    """Every client PUTs its own inventory with `generation`, released at the same moment."""
    start = asyncio.Event()
    tasks = [
        asyncio.create_task(
            _put_when_started(
                client,
                url,
                start,
                {
                    "resource_provider_generation": generation,
                    "inventories": _inventory(index, generation),
                },
            )
        )
        for index, client in enumerate(clients)
    ]
    await asyncio.sleep(0.05)  # let every task reach the start line
    start.set()
    responses = await asyncio.gather(*tasks)

    statuses = Counter(r.status_code for r in responses)
    assert statuses == {200: 1, 409: len(clients) - 1}, statuses
    for response in responses:
        if response.status_code == 409:
            assert response.json()["errors"][0]["code"] == "placement.concurrent_update"
    [winner] = [i for i, r in enumerate(responses) if r.status_code == 200]
    stored = (await clients[0].get(url)).json()
    assert stored == responses[winner].json()
    assert stored["resource_provider_generation"] == generation + 1
    wanted = _inventory(winner, generation)
    assert set(stored["inventories"]) == set(wanted)
    for name, fields in wanted.items():
        for field, value in fields.items():
            assert stored["inventories"][name][field] == value


async def _race(base: str) -> None:
    headers = {**auth(mint(roles=["admin"], project="race")), **HEADERS}
    # One connection per client, so the writes really are concurrent.
    clients = [
        httpx.AsyncClient(base_url=base, headers=headers, timeout=60) for _ in range(CLIENTS)
    ]
    try:
        created = await clients[0].post("/resource_providers", json={"name": "raced"})
        assert created.status_code == 200, created.text
        url = f"/resource_providers/{created.json()['uuid']}/inventories"
        for generation in range(ROUNDS):
            await _round(clients, url, generation)
    finally:
        for client in clients:
            await client.aclose()


TREE_PROVIDERS = 6
TREE_ROUNDS = 8
TREE_MOVES = 16


def _check_forest(providers: list[dict[str, Any]]) -> None:
    parent = {p["uuid"]: p["parent_provider_uuid"] for p in providers}
    for provider in providers:
        seen, node = set(), provider["uuid"]
        while parent[node] is not None:
            assert node not in seen, "a loop in the provider tree"
            seen.add(node)
            node = parent[node]
        assert provider["root_provider_uuid"] == node, provider


async def _tree_race(base: str) -> None:
    headers = {**auth(mint(roles=["admin"], project="race")), **HEADERS}
    clients = [httpx.AsyncClient(base_url=base, headers=headers, timeout=60) for _ in range(8)]
    rng = random.Random(7)
    try:
        uuids = []
        for index in range(TREE_PROVIDERS):
            made = await clients[0].post("/resource_providers", json={"name": f"tree-{index}"})
            uuids.append(made.json()["uuid"])
        for _ in range(TREE_ROUNDS):
            start = asyncio.Event()
            moves = [tuple(rng.sample(uuids, 2)) for _ in range(TREE_MOVES)]

            async def move(i: int, child: str, parent: str, start: asyncio.Event = start) -> int:
                await start.wait()
                response = await clients[i % len(clients)].put(
                    f"/resource_providers/{child}",
                    json={"name": f"tree-{uuids.index(child)}", "parent_provider_uuid": parent},
                )
                return response.status_code

            tasks = [asyncio.create_task(move(i, c, p)) for i, (c, p) in enumerate(moves)]
            await asyncio.sleep(0.05)
            start.set()
            statuses = set(await asyncio.gather(*tasks))
            assert statuses <= {200, 400, 409}, statuses
            listed = await clients[0].get("/resource_providers?name=")
            _check_forest(listed.json()["resource_providers"])
    finally:
        for client in clients:
            await client.aclose()


@pytest.fixture
async def own_postgres() -> AsyncIterator[str]:
    async with servers.own_postgres("inventory_race") as url:
        yield url


async def test_races_on_postgresql(own_postgres: str) -> None:
    with (
        tempfile.TemporaryDirectory() as tmp,
        allot_serve(own_postgres, workers=2, log=Path(tmp) / "serve.log", ports=PORTS) as base,
    ):
        await _race(base)
        await _tree_race(base)
    await assert_consistent(own_postgres)


async def test_races_on_sqlite() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        database_url = f"sqlite+aiosqlite:///{Path(tmp) / 'race.db'}"
        with allot_serve(database_url, workers=2, log=Path(tmp) / "serve.log", ports=PORTS) as base:
            await _race(base)
            await _tree_race(base)
        await assert_consistent(database_url)
