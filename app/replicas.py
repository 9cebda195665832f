"""How far behind the read replica is, measured a few times a second, never per request.

Each check reads the primary's current WAL position, then asks the replica whether it has
replayed that far. When it has, it was caught up as of the moment before the first read, so
its staleness is at most the time since the last check that found it caught up. A replica
that cannot be reached, or that has fallen further behind than the bound, is not read until
a check finds it back (app.db sends those reads to the primary instead).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.observability import REPLICA_LAG

log = logging.getLogger("allot.db")

CHECK_INTERVAL_S = 0.2

# asyncpg hands a pg_lsn over as an integer, and takes one back.
_PRIMARY_POSITION = text("SELECT pg_current_wal_lsn()")
_REPLAYED_SINCE = text("SELECT pg_last_wal_replay_lsn() >= CAST(:position AS pg_lsn)")


class ReplicaMonitor:
    def __init__(self, primary: AsyncEngine, replica: AsyncEngine, max_lag_ms: int) -> None:
        self.primary = primary
        self.replica = replica
        self.max_lag_s = max_lag_ms / 1000
        self.reachable = False
        self.caught_up_at: float | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def lag_s(self) -> float | None:
        """An upper bound on the replica's staleness; None while it is not known to be usable."""
        if not self.reachable or self.caught_up_at is None:
            return None
        return time.monotonic() - self.caught_up_at

    @property
    def fresh(self) -> bool:
        lag = self.lag_s
        return lag is not None and lag <= self.max_lag_s

    def unreachable(self) -> None:
        """A read found the replica gone: none goes there until a check finds it back."""
        self.reachable = False

    async def check(self) -> None:
        started = time.monotonic()
        try:
            async with self.primary.connect() as primary:
                position = await primary.scalar(_PRIMARY_POSITION)
        except Exception:
            return  # the primary's own trouble: nothing learnt about the replica
        try:
            async with self.replica.connect() as replica:
                replayed = await replica.scalar(_REPLAYED_SINCE, {"position": position})
        except Exception as exc:
            if self.reachable:
                log.warning("read replica unreachable", extra={"error_detail": repr(exc)[:300]})
            self.reachable = False
            REPLICA_LAG.set(-1)
            return
        self.reachable = True
        if replayed:
            self.caught_up_at = started
        lag = self.lag_s
        REPLICA_LAG.set(lag if lag is not None else -1)

    async def _run(self) -> None:
        while True:
            await self.check()
            await asyncio.sleep(CHECK_INTERVAL_S)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
