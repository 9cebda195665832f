"""Clock helpers for HTTP dates."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import format_datetime

_STARTED = datetime.now(UTC)


def process_started() -> datetime:
    return _STARTED


def now() -> datetime:
    return datetime.now(UTC)


def http_date(moment: datetime) -> str:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return format_datetime(moment.astimezone(UTC), usegmt=True)
