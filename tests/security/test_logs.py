"""Tokens and Authorization values never reach the log (DESIGN section 5).

conftest also fails the whole session if any token a test minted appears in any log line;
this test makes the point explicitly, with tokens in both headers, good and bad.
"""

from __future__ import annotations

import io
import json
import logging

import httpx
from fastapi import FastAPI

from app.observability import _ContextFilter, json_formatter
from tests.conftest import LOG_LINES, make_client, mint


async def test_requests_carrying_tokens_leave_no_token_in_the_log(app: FastAPI) -> None:
    good = mint(roles=["admin"], project="p", user="log-watcher")
    forged = good[:-6] + "AAAAAA"
    first = len(LOG_LINES)
    async with make_client(app, {"openstack-api-version": "placement latest"}) as c:
        for headers in (
            {"authorization": f"Bearer {good}"},
            {"x-auth-token": good},
            {"authorization": f"Bearer {forged}"},
            {"x-auth-token": forged},
        ):
            await c.get("/resource_classes", headers=headers)
            await c.post("/resource_classes", json={"name": "bad name"}, headers=headers)
    lines = LOG_LINES[first:]
    assert any('"subject": "log-watcher"' in line for line in lines)  # the requests were logged
    for line in lines:
        assert good not in line and forged not in line
        assert good.split(".")[2] not in line  # not even the signature
        assert "bearer" not in line.lower()


def test_a_token_handed_to_the_logger_is_redacted() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(json_formatter())
    handler.addFilter(_ContextFilter())
    logger = logging.getLogger("allot.test.redaction")
    logger.addHandler(handler)
    try:
        logger.warning("client sent Authorization: Bearer eyJhbGciOi.eyJzdWIiOi.c2lnbmF0dXJl")
        logger.warning("and X-Auth-Token: eyJhbGciOi.eyJzdWIiOi.c2lnbmF0dXJl too")
    finally:
        logger.removeHandler(handler)
    for line in stream.getvalue().splitlines():
        message = json.loads(line)["message"]
        assert "eyJ" not in message and "[redacted]" in message


async def test_error_bodies_never_echo_the_request(client: httpx.AsyncClient) -> None:
    probe = "CUSTOM_'; DROP TABLE traits; --<script>"
    response = await client.post("/resource_classes", json={"name": probe})
    assert response.status_code == 400
    assert "DROP" not in response.text and "<script>" not in response.text
