"""Placement's cache headers: from 1.15, successful reads say `no-cache` and when they changed."""

from __future__ import annotations

from datetime import datetime

from fastapi import Response

from app.microversion import Microversion
from app.timeutil import http_date, now

CACHE_HEADERS_SINCE = 15


def set_last_modified(response: Response, version: Microversion, moment: datetime | None) -> None:
    if version.at_least(CACHE_HEADERS_SINCE):
        response.headers["cache-control"] = "no-cache"
        response.headers["last-modified"] = http_date(moment or now())
