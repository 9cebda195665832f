"""Property: random sequences of PUT, POST, DELETE, reshape and inventory replacement agree
with a model of usage, and leave every inventory's kept count (`used`) equal to the sum of its
allocations.

The model is the contract in a few lines: a consumer's allocations are replaced as a whole;
an amount must be within max_unit; a provider never ends above capacity; a write that fails
changes nothing (all-or-nothing across the consumers of one POST); a reshape cannot drop a
provider's capacity below what consumers it leaves alone still use, and an inventory change
cannot remove or shrink a class below its usage. After every step the service's answer
(accepted or refused) and every provider's usage must match the model.
"""

from __future__ import annotations

import uuid as uuidlib
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.services.integrity import differences
from tests.allocation_helpers import body, make_provider

PROVIDERS = 2
CONSUMERS = 4
INITIAL_TOTAL = 6  # VCPU per provider (max_unit = total)

Allocs = dict[int, int]  # provider index -> VCPU

allocs = st.dictionaries(st.integers(0, PROVIDERS - 1), st.integers(1, 8), max_size=2)
consumer = st.integers(0, CONSUMERS - 1)
operations = st.lists(
    st.one_of(
        st.tuples(st.just("put"), consumer, allocs),
        st.tuples(st.just("post"), st.dictionaries(consumer, allocs, min_size=1, max_size=3)),
        st.tuples(st.just("delete"), consumer),
        st.tuples(
            st.just("reshape"),
            st.integers(0, PROVIDERS - 1),
            st.integers(1, 10),
            st.dictionaries(consumer, allocs, max_size=2),
        ),
        # A provider's whole inventory replaced: VCPU `total` (0: no VCPU inventory at all).
        st.tuples(st.just("inventory"), st.integers(0, PROVIDERS - 1), st.integers(0, 10)),
    ),
    min_size=1,
    max_size=8,
)


@dataclass
class Model:
    totals: list[int] = field(default_factory=lambda: [INITIAL_TOTAL] * PROVIDERS)
    held: dict[int, Allocs] = field(default_factory=dict)

    def usage(self, held: dict[int, Allocs] | None = None) -> Counter[int]:
        used: Counter[int] = Counter()
        for allocations in (self.held if held is None else held).values():
            used.update(allocations)
        return used

    def fits(self, held: dict[int, Allocs], totals: list[int]) -> bool:
        per_amount = all(n <= totals[rp] for a in held.values() for rp, n in a.items())
        used = self.usage(held)
        return per_amount and all(used[rp] <= totals[rp] for rp in range(PROVIDERS))

    def write(self, changes: dict[int, Allocs]) -> bool:
        held = {c: a for c, a in self.held.items() if c not in changes}
        held |= {c: a for c, a in changes.items() if a}
        if not self.fits(held, self.totals):
            return False
        self.held = held
        return True

    def inventory(self, rp: int, total: int) -> bool:
        if self.usage()[rp] > total:
            return False  # a class in use cannot go, nor shrink below its usage
        self.totals[rp] = total
        return True

    def reshape(self, rp: int, total: int, changes: dict[int, Allocs]) -> bool:
        untouched = {c: a for c, a in self.held.items() if c not in changes}
        if self.usage(untouched)[rp] > total:
            return False  # the inventory would drop below what others still use: in use
        totals = list(self.totals)
        totals[rp] = total
        held = untouched | {c: a for c, a in changes.items() if a}
        if not self.fits(held, totals):
            return False
        self.totals, self.held = totals, held
        return True


@dataclass
class World:
    providers: list[str]
    consumers: list[str]
    generations: dict[int, int] = field(default_factory=dict)  # consumer -> generation


def _allocations(world: World, allocations: Allocs) -> dict[str, dict[str, int]]:
    return {world.providers[rp]: {"VCPU": n} for rp, n in allocations.items()}


def _entry(world: World, index: int, allocations: Allocs) -> dict[str, Any]:
    return body(_allocations(world, allocations), generation=world.generations.get(index))


async def _apply(
    client: httpx.AsyncClient, world: World, model: Model, op: tuple[Any, ...]
) -> None:
    kind = op[0]
    if kind == "put":
        _, index, allocations = op
        response = await client.put(
            f"/allocations/{world.consumers[index]}", json=_entry(world, index, allocations)
        )
        expected = model.write({index: allocations})
        changed = {index: allocations}
    elif kind == "post":
        _, changes = op
        response = await client.post(
            "/allocations",
            json={world.consumers[i]: _entry(world, i, a) for i, a in changes.items()},
        )
        expected = model.write(changes)
        changed = changes
    elif kind == "delete":
        _, index = op
        response = await client.delete(f"/allocations/{world.consumers[index]}")
        expected = index in model.held
        if expected:
            del model.held[index]
        changed = {index: {}}
    elif kind == "inventory":
        _, rp, total = op
        provider = world.providers[rp]
        generation = (await client.get(f"/resource_providers/{provider}")).json()["generation"]
        inventories = {"VCPU": {"total": total, "max_unit": total}} if total else {}
        response = await client.put(
            f"/resource_providers/{provider}/inventories",
            json={"resource_provider_generation": generation, "inventories": inventories},
        )
        expected = model.inventory(rp, total)
        changed = {}
    else:
        _, rp, total, changes = op
        provider = world.providers[rp]
        generation = (await client.get(f"/resource_providers/{provider}")).json()["generation"]
        inventory = {"VCPU": {"total": total, "max_unit": total}}
        response = await client.post(
            "/reshaper",
            json={
                "inventories": {
                    provider: {"resource_provider_generation": generation, "inventories": inventory}
                },
                "allocations": {
                    world.consumers[i]: _entry(world, i, a) for i, a in changes.items()
                },
            },
        )
        expected = model.reshape(rp, total, changes)
        changed = changes
    assert response.status_code < 500, response.text
    assert (response.status_code in (200, 204)) == expected, (op, response.text)
    if expected:
        for index in changed:
            if index in model.held:
                world.generations[index] = world.generations.get(index, 0) + 1
            else:
                world.generations.pop(index, None)


async def _check(client: httpx.AsyncClient, world: World, model: Model) -> None:
    used = model.usage()
    for rp, provider in enumerate(world.providers):
        usages = (await client.get(f"/resource_providers/{provider}/usages")).json()["usages"]
        # Usages list the classes in the provider's inventory.
        assert usages == ({"VCPU": used[rp]} if model.totals[rp] else {})
    for index, uuid in enumerate(world.consumers):
        shown = (await client.get(f"/allocations/{uuid}")).json()
        expected = _allocations(world, model.held.get(index, {}))
        assert {rp: a["resources"] for rp, a in shown["allocations"].items()} == expected
        assert shown.get("consumer_generation") == world.generations.get(index)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=operations)
async def test_random_sequences_match_the_model(
    client: httpx.AsyncClient, app: FastAPI, steps: list[tuple[Any, ...]]
) -> None:
    # Fresh providers and consumers per example: examples share the database.
    inventory = {"VCPU": {"total": INITIAL_TOTAL, "max_unit": INITIAL_TOTAL}}
    world = World(
        providers=[await make_provider(client, inventory) for _ in range(PROVIDERS)],
        consumers=[str(uuidlib.uuid4()) for _ in range(CONSUMERS)],
    )
    model = Model()
    for step in steps:
        await _apply(client, world, model, step)
        await _check(client, world, model)
        # And in the rows: every inventory's kept count equals the sum of its allocations.
        async with app.state.database.engine.connect() as conn:
            assert await differences(conn) == []
