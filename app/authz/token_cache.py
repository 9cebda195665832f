"""What an identity service said of a token, remembered: by the token's hash, for a bounded time.

A client sends the same token with every request; asking Keystone each time would put a round
trip (and Keystone's own database) in front of every claim. Entries are keyed by SHA-256 of the
token, so the token itself is never kept. Concurrent first requests with one token share one
validation.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Awaitable, Callable
from typing import NamedTuple

from cachetools import TLRUCache

from app.authz.subjects import InvalidToken, Subject
from app.observability import KEYSTONE_CACHE_HITS


class Validated(NamedTuple):
    """An identity service's answer: the subject (None: the token is not valid) and until
    when (epoch seconds) the answer holds."""

    subject: Subject | None
    until: float


Validate = Callable[[str], Awaitable[Validated]]
# Called before a validation is started (not for an answer from memory); raises to refuse it.
Admit = Callable[[], Awaitable[None]]


def token_key(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class TokenCache:
    def __init__(self, size: int, max_seconds: float, clock: Callable[[], float] = time.time):
        self._max_seconds = max_seconds
        self._clock = clock
        self._answers: TLRUCache[str, Validated] = TLRUCache(
            maxsize=size, ttu=self._expiry, timer=clock
        )
        self._pending: dict[str, asyncio.Future[Validated]] = {}

    def _expiry(self, _key: str, answer: Validated, now: float) -> float:
        return min(answer.until, now + self._max_seconds)

    async def subject(self, token: str, validate: Validate, admit: Admit | None = None) -> Subject:
        """The token's subject, from memory or from one call of `validate`."""
        key = token_key(token)
        answer = self._answers.get(key)
        if answer is not None:
            KEYSTONE_CACHE_HITS.labels("valid" if answer.subject else "invalid").inc()
        else:
            if admit is not None and key not in self._pending:
                await admit()
            answer = await self._validate_once(key, token, validate)
        if answer.subject is None:
            raise InvalidToken("the identity service does not know the token")
        return answer.subject

    async def _validate_once(self, key: str, token: str, validate: Validate) -> Validated:
        pending = self._pending.get(key)
        if pending is None:
            pending = asyncio.ensure_future(self._validate(key, token, validate))
            self._pending[key] = pending
            pending.add_done_callback(lambda done: self._forget(key, done))
        # Shielded: one caller giving up (a client disconnecting) does not cancel the
        # validation the others are waiting for.
        return await asyncio.shield(pending)

    async def _validate(self, key: str, token: str, validate: Validate) -> Validated:
        answer = await validate(token)
        if self._max_seconds > 0 and answer.until > self._clock():
            self._answers[key] = answer
        return answer

    def _forget(self, key: str, done: asyncio.Future[Validated]) -> None:
        self._pending.pop(key, None)
        if not done.cancelled():
            done.exception()  # retrieved: a failure every waiter abandoned is not reported twice

    def clear(self) -> None:
        self._answers.clear()

    def __len__(self) -> int:
        return len(self._answers)
