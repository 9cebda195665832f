"""Request size and media type: refused before anything reads the body."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx


async def _count_custom_classes(client: httpx.AsyncClient) -> int:
    classes = (await client.get("/resource_classes")).json()["resource_classes"]
    return sum(1 for c in classes if c["name"].startswith("CUSTOM_"))


async def test_a_body_over_the_limit_is_413_by_content_length(client: httpx.AsyncClient) -> None:
    padding = "X" * 1_100_000  # over the 1 MiB default
    response = await client.post(
        "/resource_classes",
        content=f'{{"name": "CUSTOM_BIG", "pad": "{padding}"}}',
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 413
    assert response.json()["errors"][0]["code"] == "allot.body.too_large"
    assert await _count_custom_classes(client) == 0


async def test_a_chunked_body_over_the_limit_is_413(client: httpx.AsyncClient) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"name": "CUSTOM_BIG", "pad": "'
        for _ in range(20):
            yield b"X" * 65536  # no Content-Length: the limit is counted as it streams
        yield b'"}'

    response = await client.post(
        "/resource_classes", content=chunks(), headers={"content-type": "application/json"}
    )
    assert "content-length" not in response.request.headers
    assert response.status_code == 413
    assert response.json()["errors"][0]["code"] == "allot.body.too_large"
    assert await _count_custom_classes(client) == 0


async def test_a_body_under_the_limit_is_read(client: httpx.AsyncClient) -> None:
    response = await client.post("/resource_classes", json={"name": "CUSTOM_SMALL"})
    assert response.status_code == 201


async def test_non_json_writes_are_415(client: httpx.AsyncClient) -> None:
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "application/xml"):
        response = await client.post(
            "/resource_classes",
            content=b'{"name": "CUSTOM_TEXT"}',
            headers={"content-type": content_type},
        )
        assert response.status_code == 415, content_type
        assert response.json()["errors"][0]["title"] == "Unsupported Media Type"
    assert await _count_custom_classes(client) == 0


async def test_malformed_json_is_400_and_changes_nothing(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/resource_classes",
        content=b'{"name": "CUSTOM_BROKEN"',
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 400
    assert await _count_custom_classes(client) == 0
