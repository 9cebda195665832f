"""Query strings the way Placement reads them: known keys only, repeated only where allowed."""

from __future__ import annotations

from collections.abc import Collection

from fastapi import Request

from app.errors import QUERY_DUPLICATE_KEY, bad_request

# No query parameter may be repeated more than this, even where repetition is allowed.
MAX_REPEATS = 64
MAX_VALUE_LENGTH = 8192

# Bounds of filter values (documented in OpenAPI). Together they keep a request line well inside
# what the HTTP server reads, even percent-encoded, so an over-long query is our 400, not its.
RESOURCES_MAX_LENGTH = 500  # `VCPU:1,MEMORY_MB:512,...`
TRAITS_MAX_LENGTH = 500  # ~20 trait names
AGGREGATES_MAX_LENGTH = 1000  # ~25 aggregate UUIDs
UUID_MAX_LENGTH = 64
WORD_MAX_LENGTH = 32  # a number or a keyword (limit, group_policy)


class Query:
    """The query string of one request, checked against what the route accepts."""

    def __init__(
        self,
        request: Request,
        allowed: Collection[str],
        *,
        repeatable: Collection[str] = (),
        allowed_prefixes: Collection[str] = (),
    ) -> None:
        self._items = request.query_params.multi_items()
        self._values: dict[str, list[str]] = {}
        for key, value in self._items:
            known = key in allowed or any(key.startswith(p) for p in allowed_prefixes)
            if not known:
                raise bad_request(f"unknown query parameter {key[:64]!r}")
            if len(value) > MAX_VALUE_LENGTH:
                raise bad_request(f"query parameter {key!r} too long")
            self._values.setdefault(key, []).append(value)
        for key, values in self._values.items():
            repeat_ok = key in repeatable or any(key.startswith(p) for p in repeatable)
            if len(values) > 1 and not repeat_ok:
                raise bad_request(f"query parameter {key!r} repeated", QUERY_DUPLICATE_KEY)
            if len(values) > MAX_REPEATS:
                raise bad_request(f"query parameter {key!r} repeated too often")

    def get(self, key: str) -> str | None:
        values = self._values.get(key)
        return values[0] if values else None

    def get_all(self, key: str) -> list[str]:
        return list(self._values.get(key, []))

    def keys(self) -> list[str]:
        return list(self._values)

    def __contains__(self, key: str) -> bool:
        return key in self._values
