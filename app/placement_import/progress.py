"""Progress of a long copy: a live bar per table on a terminal (tqdm: rows, rate, time left),
a plain line per table and every few seconds otherwise (logs, CI)."""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from tqdm import tqdm

_LINE_EVERY_S = 5.0


class Progress:
    def __init__(self, out: TextIO | None, live: bool) -> None:
        self.out, self.live = out, live
        self._bar: Any = None
        self._started = 0.0
        self._last_line = 0.0
        self._total = 0

    @classmethod
    def to(cls, out: TextIO = sys.stderr) -> Progress:
        return cls(out, live=out.isatty())

    @classmethod
    def silent(cls) -> Progress:
        return cls(None, live=False)

    def start(self, table: str, total: int) -> None:
        self._started = self._last_line = time.monotonic()
        self._total = total
        if self.out is not None and self.live:
            self._bar = tqdm(total=total, desc=table, unit=" rows", file=self.out, leave=True)

    def advance(self, table: str, done: int) -> None:
        if self._bar is not None:
            self._bar.update(done - self._bar.n)
            return
        now = time.monotonic()
        if self.out is not None and now - self._last_line >= _LINE_EVERY_S:
            self._last_line = now
            rate = done / max(now - self._started, 1e-9)
            left = (self._total - done) / rate if rate else 0
            print(
                f"{table}: {done}/{self._total} rows, {rate:.0f} rows/s, {left:.0f} s left",
                file=self.out,
                flush=True,
            )

    def finish(self, table: str, done: int) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        elif self.out is not None:
            seconds = time.monotonic() - self._started
            print(f"{table}: {done} rows in {seconds:.1f} s", file=self.out, flush=True)
