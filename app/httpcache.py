"""Placement's cache headers: from 1.15, successful reads say `no-cache` and when they changed."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from fastapi import Response

from app.microversion import Microversion
from app.timeutil import http_date, now

CACHE_HEADERS_SINCE = 15


def latest(*moments: datetime | None, among: Iterable[datetime | None] = ()) -> datetime:
    """The newest of some timestamps; now when there are none."""
    # SQLite hands timestamps back without a zone; they were stored in UTC.
    known = [m if m.tzinfo else m.replace(tzinfo=UTC) for m in (*moments, *among) if m is not None]
    return max(known) if known else now()


def set_last_modified(response: Response, version: Microversion, moment: datetime | None) -> None:
    if version.at_least(CACHE_HEADERS_SINCE):
        response.headers["cache-control"] = "no-cache"
        response.headers["last-modified"] = http_date(moment or now())
