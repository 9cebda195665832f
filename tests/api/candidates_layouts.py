"""Provider layouts for the allocation candidate tests, built through the HTTP API."""

from __future__ import annotations

import json
import uuid as uuidlib
from typing import Any

import httpx


class Layout:
    """Creates providers with inventories, traits and aggregates; remembers uuids by name."""

    def __init__(self, client: httpx.AsyncClient, headers: dict[str, str] | None = None) -> None:
        self.client = client
        self.headers = headers or {}
        self.uuids: dict[str, str] = {}
        self.names: dict[str, str] = {}

    async def provider(
        self,
        name: str,
        *,
        parent: str | None = None,
        inventory: dict[str, int | dict[str, Any]] | None = None,
        traits: list[str] | None = None,
        aggregates: list[str] | None = None,
        owner: str | None = None,
    ) -> str:
        uuid = str(uuidlib.uuid5(uuidlib.NAMESPACE_DNS, f"allot-test-{name}"))
        body: dict[str, Any] = {"name": name, "uuid": uuid}
        if parent:
            body["parent_provider_uuid"] = self.uuids[parent]
        if owner:
            body["owner_project_id"] = owner
        r = await self.client.post("/resource_providers", json=body, headers=self.headers)
        assert r.status_code == 200, r.text
        generation = r.json()["generation"]
        self.uuids[name], self.names[uuid] = uuid, name
        base = f"/resource_providers/{uuid}"
        if inventory:
            inventories = {
                rc: ({"total": spec} if isinstance(spec, int) else spec)
                for rc, spec in inventory.items()
            }
            r = await self.client.put(
                f"{base}/inventories",
                json={"inventories": inventories, "resource_provider_generation": generation},
                headers=self.headers,
            )
            assert r.status_code == 200, r.text
            generation = r.json()["resource_provider_generation"]
        if traits:
            for trait in traits:
                if trait.startswith("CUSTOM_"):
                    await self.client.put(f"/traits/{trait}", headers=self.headers)
            r = await self.client.put(
                f"{base}/traits",
                json={"traits": traits, "resource_provider_generation": generation},
                headers=self.headers,
            )
            assert r.status_code == 200, r.text
            generation = r.json()["resource_provider_generation"]
        if aggregates:
            r = await self.client.put(
                f"{base}/aggregates",
                json={"aggregates": aggregates, "resource_provider_generation": generation},
                headers=self.headers,
            )
            assert r.status_code == 200, r.text
        return uuid

    def named(self, allocation_request: dict[str, Any]) -> dict[str, dict[str, int]]:
        """An allocation request (1.12+) as {provider name: resources}."""
        return {
            self.names[uuid]: entry["resources"]
            for uuid, entry in allocation_request["allocations"].items()
        }

    def named_all(self, body: dict[str, Any]) -> list[dict[str, dict[str, int]]]:
        return sorted((self.named(a) for a in body["allocation_requests"]), key=canonical)

    def mappings(self, allocation_request: dict[str, Any]) -> dict[str, list[str]]:
        return {
            suffix: sorted(self.names[u] for u in uuids)
            for suffix, uuids in allocation_request["mappings"].items()
        }


def agg(name: str) -> str:
    return str(uuidlib.uuid5(uuidlib.NAMESPACE_DNS, f"allot-test-aggregate-{name}"))


def canonical(item: Any) -> str:
    """A sort key for lists of nested dicts."""
    return json.dumps(item, sort_keys=True)
