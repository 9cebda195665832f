"""Rate limits: per authenticated subject; per client address for anonymous and failed-auth calls.

Moving windows from the `limits` library, in process memory by default or in Redis
(`ALLOT_RATE_LIMIT_STORAGE=redis://...`) so that every server process shares one count.
"""

from __future__ import annotations

import math
import time

from limits import RateLimitItem, parse_many
from limits.aio.storage import Storage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.storage import storage_from_string

from app.errors import RATE_LIMITED, ApiError
from app.observability import RATE_LIMITED as REJECTIONS
from app.settings import ConfigurationError, Settings


def _limits(setting: str, value: str) -> list[RateLimitItem]:
    if value.strip().lower() == "off":
        return []
    try:
        return parse_many(value)
    except ValueError as exc:
        raise ConfigurationError(
            f"{setting} is not in `limits` notation (e.g. 200/second)"
        ) from exc


def _storage_uri(uri: str) -> str:
    # The async strategies need the async storages: memory:// -> async+memory://.
    return uri if uri.startswith("async+") else f"async+{uri}"


class RateLimiter:
    def __init__(self, settings: Settings) -> None:
        self.subject_limits = _limits("ALLOT_RATE_LIMIT", settings.rate_limit)
        self.anon_limits = _limits("ALLOT_RATE_LIMIT_ANON", settings.rate_limit_anon)
        uri = _storage_uri(settings.rate_limit_storage)
        # redis-py's asyncio client: about half of coredis's CPU per hit, and every request hits.
        options = {"implementation": "redispy"} if uri.startswith("async+redis") else {}
        try:
            storage = storage_from_string(uri, **options)
        except Exception as exc:  # the library raises several types for a bad URI
            raise ConfigurationError(
                "ALLOT_RATE_LIMIT_STORAGE is not a supported storage URI"
            ) from exc
        assert isinstance(storage, Storage)
        self.storage: Storage = storage
        self.strategy = MovingWindowRateLimiter(self.storage)

    async def check_storage(self) -> None:
        """Refuse to start when the configured shared storage cannot be reached."""
        if not await self.storage.check():
            raise ConfigurationError("ALLOT_RATE_LIMIT_STORAGE cannot be reached")

    async def hit_subject(self, subject_id: str) -> None:
        await self._hit(self.subject_limits, "subject", subject_id)

    async def hit_anonymous(self, address: str) -> None:
        await self._hit(self.anon_limits, "anonymous", address)

    async def _hit(self, items: list[RateLimitItem], kind: str, key: str) -> None:
        for item in items:
            if not await self.strategy.hit(item, kind, key):
                REJECTIONS.labels(kind).inc()
                stats = await self.strategy.get_window_stats(item, kind, key)
                retry_after = max(1, math.ceil(stats.reset_time - time.time()))
                raise ApiError(
                    429,
                    RATE_LIMITED,
                    log_detail=f"{kind} limit {item} exceeded",
                    headers={"Retry-After": str(retry_after)},
                )
