"""Rate limits: per authenticated subject; per client address for anonymous and failed-auth calls.

Moving windows from the `limits` library, in process memory by default or in Redis
(`ALLOT_RATE_LIMIT_STORAGE=redis://...`) so that every server process shares one count.

With Redis, a process has at most one call in flight per limit and caller: the hits that arrive
meanwhile wait for it and are then counted together, in one call (a moving window takes n
entries at once, or none). Under load a round trip serves many requests; alone, a request
waits for nothing. When a batch does not fit whole, its requests try one by one, in arrival
order, so each gets exactly the answer it would have got alone.
"""

from __future__ import annotations

import asyncio
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
        # In process memory a hit costs no round trip: nothing to gain from batching.
        self._batching = not uri.startswith("async+memory")
        self._waiting: dict[str, list[asyncio.Future[bool]]] = {}  # by limit and caller
        self._counting: dict[str, asyncio.Task[None]] = {}  # held: the loop keeps weak refs

    async def check_storage(self) -> None:
        """Refuse to start when the configured shared storage cannot be reached."""
        if not await self.storage.check():
            raise ConfigurationError("ALLOT_RATE_LIMIT_STORAGE cannot be reached")

    async def hit_subject(self, subject_id: str) -> None:
        await self._hit(self.subject_limits, "subject", subject_id)

    async def hit_anonymous(self, address: str) -> None:
        await self._hit(self.anon_limits, "anonymous", address)

    async def refuse_if_anonymous_spent(self, address: str) -> None:
        """429 for an address already over its anonymous limit, counting nothing: asked before
        work that a failed authentication would waste (a call to Keystone)."""
        for item in self.anon_limits:
            if not await self.strategy.test(item, "anonymous", address):
                raise await self._refusal(item, "anonymous", address)

    async def _hit(self, items: list[RateLimitItem], kind: str, key: str) -> None:
        for item in items:
            allowed = (
                await self._batched(item, kind, key)
                if self._batching
                else await self.strategy.hit(item, kind, key)
            )
            if not allowed:
                raise await self._refusal(item, kind, key)

    async def _refusal(self, item: RateLimitItem, kind: str, key: str) -> ApiError:
        REJECTIONS.labels(kind).inc()
        stats = await self.strategy.get_window_stats(item, kind, key)
        retry_after = max(1, math.ceil(stats.reset_time - time.time()))
        return ApiError(
            429,
            RATE_LIMITED,
            log_detail=f"{kind} limit {item} exceeded",
            headers={"Retry-After": str(retry_after)},
        )

    def _batched(self, item: RateLimitItem, kind: str, key: str) -> asyncio.Future[bool]:
        """This hit's answer, once the batch it joins is counted."""
        slot = item.key_for(kind, key)  # names the limit (amount and window) and the caller
        answer = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(slot, []).append(answer)
        if slot not in self._counting:  # else the call in flight takes this batch next
            self._counting[slot] = asyncio.create_task(self._count(slot, item, kind, key))
        return answer

    async def _count(self, slot: str, item: RateLimitItem, kind: str, key: str) -> None:
        """Count the slot's waiting hits, a batch per call, until none are left."""
        try:
            while answers := self._waiting.pop(slot, None):
                await self._answer(answers, item, kind, key)
        except BaseException:  # cancelled (shutting down): so are the requests still waiting
            for answer in self._waiting.pop(slot, []):
                answer.cancel()
            raise
        finally:
            del self._counting[slot]

    async def _answer(
        self, answers: list[asyncio.Future[bool]], item: RateLimitItem, kind: str, key: str
    ) -> None:
        try:
            results = await self._allowed(item, kind, key, len(answers))
        except Exception as exc:  # the storage failed: so does every request of the batch
            for answer in answers:
                if not answer.done():
                    answer.set_exception(exc)
            return
        except BaseException:
            for answer in answers:
                answer.cancel()
            raise
        for answer, allowed in zip(answers, results, strict=True):
            if not answer.done():  # a request may have been cancelled meanwhile
                answer.set_result(allowed)

    async def _allowed(self, item: RateLimitItem, kind: str, key: str, hits: int) -> list[bool]:
        if await self.strategy.hit(item, kind, key, cost=hits):
            return [True] * hits
        if hits == 1:
            return [False]
        # No room for all of them: one by one, so each gets the answer it would have alone.
        return [await self.strategy.hit(item, kind, key) for _ in range(hits)]
