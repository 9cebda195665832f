"""GET /usages (1.9+): what a project (or one of its users) holds; by consumer type from 1.38.

Runs on PostgreSQL as well as SQLite: the consumer-type grouping is where Placement fails."""

from __future__ import annotations

import httpx
import pytest

from tests.allocation_helpers import (
    OTHER_PROJECT,
    OTHER_USER,
    PROJECT,
    USER,
    body,
    make_provider,
    new_uuid,
    v,
)


@pytest.fixture
async def populated(client: httpx.AsyncClient) -> str:
    """INSTANCE x2, MIGRATION x1, one untyped (1.37) consumer, one of another user,
    and one of another project."""
    rp = await make_provider(
        client, {"VCPU": {"total": 64}, "MEMORY_MB": {"total": 8192}, "DISK_GB": {"total": 500}}
    )

    async def put(allocs: dict[str, int], version: str = "latest", **kw: object) -> None:
        document = body({rp: allocs}, **kw)  # type: ignore[arg-type]
        response = await client.put(f"/allocations/{new_uuid()}", json=document, headers=v(version))
        assert response.status_code == 204, response.text

    await put({"VCPU": 2, "MEMORY_MB": 512})
    await put({"VCPU": 1, "DISK_GB": 5})
    await put({"VCPU": 4}, consumer_type="MIGRATION")
    await put({"DISK_GB": 10}, "1.37", consumer_type=None)
    await put({"VCPU": 8}, user=OTHER_USER, consumer_type="MIGRATION")
    await put({"VCPU": 16}, project=OTHER_PROJECT)
    return rp


async def test_not_there_before_1_9(client: httpx.AsyncClient) -> None:
    response = await client.get(f"/usages?project_id={PROJECT}", headers=v("1.8"))
    assert response.status_code == 404


@pytest.mark.parametrize(
    "query",
    [
        "",
        "project_id=",
        f"project_id={'p' * 256}",
        f"project_id={PROJECT}&user_id=",
        f"project_id={PROJECT}&dummy=1",
        f"project_id={PROJECT}&project_id={PROJECT}",
        f"project_id={PROJECT}&consumer_type=instance",
    ],
)
async def test_bad_queries_are_400(client: httpx.AsyncClient, query: str) -> None:
    response = await client.get(f"/usages?{query}", headers=v("1.38"))
    assert response.status_code == 400


async def test_consumer_type_filter_needs_1_38(client: httpx.AsyncClient) -> None:
    query = f"/usages?project_id={PROJECT}&consumer_type=INSTANCE"
    assert (await client.get(query, headers=v("1.37"))).status_code == 400


async def test_nothing_used_yet(client: httpx.AsyncClient) -> None:
    for version in ("1.9", "latest"):
        response = await client.get(f"/usages?project_id={PROJECT}", headers=v(version))
        assert response.json() == {"usages": {}}


async def test_totals_by_project_and_user(client: httpx.AsyncClient, populated: str) -> None:
    by_project = await client.get(f"/usages?project_id={PROJECT}", headers=v("1.9"))
    assert by_project.json() == {"usages": {"VCPU": 15, "MEMORY_MB": 512, "DISK_GB": 15}}
    assert "cache-control" not in by_project.headers
    by_user = await client.get(f"/usages?project_id={PROJECT}&user_id={USER}", headers=v("1.15"))
    assert by_user.json() == {"usages": {"VCPU": 7, "MEMORY_MB": 512, "DISK_GB": 15}}
    assert by_user.headers["cache-control"] == "no-cache"


async def test_grouped_by_consumer_type_from_1_38(
    client: httpx.AsyncClient, populated: str
) -> None:
    response = await client.get(f"/usages?project_id={PROJECT}")
    assert response.status_code == 200
    assert response.json() == {
        "usages": {
            "INSTANCE": {"consumer_count": 2, "VCPU": 3, "MEMORY_MB": 512, "DISK_GB": 5},
            "MIGRATION": {"consumer_count": 2, "VCPU": 12},
            "unknown": {"consumer_count": 1, "DISK_GB": 10},
        }
    }


@pytest.mark.parametrize(
    ("consumer_type", "expected"),
    [
        ("MIGRATION", {"MIGRATION": {"consumer_count": 2, "VCPU": 12}}),
        ("unknown", {"unknown": {"consumer_count": 1, "DISK_GB": 10}}),
        (
            "all",
            {"all": {"consumer_count": 5, "VCPU": 15, "MEMORY_MB": 512, "DISK_GB": 15}},
        ),
        ("COW", {}),
        ("ALL", {}),
        ("UNKNOWN", {}),
    ],
)
async def test_filter_by_consumer_type(
    client: httpx.AsyncClient, populated: str, consumer_type: str, expected: dict[str, object]
) -> None:
    response = await client.get(f"/usages?project_id={PROJECT}&consumer_type={consumer_type}")
    assert response.json() == {"usages": expected}


async def test_by_user_and_type(client: httpx.AsyncClient, populated: str) -> None:
    response = await client.get(
        f"/usages?project_id={PROJECT}&user_id={OTHER_USER}&consumer_type=MIGRATION"
    )
    assert response.json() == {"usages": {"MIGRATION": {"consumer_count": 1, "VCPU": 8}}}
