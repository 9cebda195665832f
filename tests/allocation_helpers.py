"""Helpers shared by the allocation, usage and reshaper tests: providers with inventory made
through the HTTP API, and a snapshot of everything an allocation write may change."""

from __future__ import annotations

import uuid as uuidlib
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import func, select

from app.models import Allocation, Consumer, ConsumerType, Project, ResourceProvider, User

PROJECT = "9a1e5d1e-7b0e-4a4b-8a43-5b3e1f0a0c11"
USER = "c6e3a0b4-3f57-4e2a-9d47-2f1b2a5e9d22"
OTHER_PROJECT = "2f0c4ffc-4c4d-407a-b334-56297b871b7f"
OTHER_USER = "406e1095-71cb-47b9-9b3c-aedb7f663f5a"


def v(version: str) -> dict[str, str]:
    return {"openstack-api-version": f"placement {version}"}


def new_uuid() -> str:
    return str(uuidlib.uuid4())


async def make_provider(
    client: httpx.AsyncClient,
    inventories: dict[str, dict[str, Any]] | None = None,
    *,
    name: str | None = None,
    owner: str | None = None,
    parent: str | None = None,
    headers: dict[str, str] | None = None,
) -> str:
    """A provider (owned by `owner`, if given) with the given inventories; its UUID."""
    rp = new_uuid()
    body: dict[str, Any] = {"name": name or f"rp-{rp[:8]}", "uuid": rp}
    if owner is not None:
        body["owner_project_id"] = owner
    if parent is not None:
        body["parent_provider_uuid"] = parent
    created = await client.post("/resource_providers", json=body, headers=headers or {})
    assert created.status_code in (200, 201), created.text
    if inventories:
        put = await client.put(
            f"/resource_providers/{rp}/inventories",
            json={"resource_provider_generation": 0, "inventories": inventories},
            headers=headers or {},
        )
        assert put.status_code == 200, put.text
    return rp


def body(
    allocations: dict[str, dict[str, int]],
    *,
    project: str = PROJECT,
    user: str = USER,
    generation: int | None = None,
    consumer_type: str | None = "INSTANCE",
) -> dict[str, Any]:
    """A PUT body at the latest microversion (1.38+): {rp: {CLASS: n}} -> the full shape."""
    document: dict[str, Any] = {
        "allocations": {rp: {"resources": dict(res)} for rp, res in allocations.items()},
        "project_id": project,
        "user_id": user,
        "consumer_generation": generation,
    }
    if consumer_type is not None:
        document["consumer_type"] = consumer_type
    return document


async def generation_of(client: httpx.AsyncClient, rp: str) -> int:
    response = await client.get(f"/resource_providers/{rp}")
    assert response.status_code == 200
    generation: int = response.json()["generation"]
    return generation


async def snapshot(app: FastAPI) -> dict[str, Any]:
    """Everything an allocation write may change: row counts and every generation."""
    async with app.state.database.engine.connect() as conn:
        counts = {
            model.__tablename__: await conn.scalar(select(func.count()).select_from(model))
            for model in (Allocation, Consumer, Project, User, ConsumerType)
        }
        providers = dict(
            (await conn.execute(select(ResourceProvider.uuid, ResourceProvider.generation))).all()
        )
        consumers = dict((await conn.execute(select(Consumer.uuid, Consumer.generation))).all())
        allocations = sorted(
            (
                await conn.execute(
                    select(
                        Allocation.consumer_id,
                        Allocation.resource_provider_id,
                        Allocation.resource_class_id,
                        Allocation.used,
                    )
                )
            ).all()
        )
    return {
        "counts": counts,
        "providers": providers,
        "consumers": consumers,
        "allocations": allocations,
    }
