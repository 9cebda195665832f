"""Clock helpers for HTTP dates."""

from __future__ import annotations

from collections.abc import Iterable
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


def latest(*moments: datetime | None, among: Iterable[datetime | None] = ()) -> datetime:
    """The newest of some timestamps; now when there are none."""
    # SQLite hands timestamps back without a zone; they were stored in UTC.
    known = [m if m.tzinfo else m.replace(tzinfo=UTC) for m in (*moments, *among) if m is not None]
    return max(known) if known else now()
