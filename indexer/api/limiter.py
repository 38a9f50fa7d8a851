"""AdaptiveLimiter: an AIMD cap on requests in flight (halve on 429, grow after successes)."""

from __future__ import annotations

import asyncio
from typing import Callable, Literal

Outcome = Literal["ok", "throttled", "failed"]


class AdaptiveLimiter:
    """Caps requests in flight with AIMD: halve on a 429, add one after a run of successes.

    One 429 episode halves the limit once: 429s of requests that started
    before the last decrease are ignored (they saw the old, higher load).
    The limit grows by one after `limit` successes in a row, up to the maximum.
    Other failures (5xx, timeouts) leave the limit alone.
    """

    def __init__(self, limit: int, on_change: Callable[[int], None] | None = None) -> None:
        self.max_limit = limit
        self.limit = limit
        self.in_flight = 0
        self._epoch = 0
        self._streak = 0
        self._waiters: list[asyncio.Future[None]] = []
        self._on_change = on_change

    async def acquire(self) -> int:
        """Wait for a free slot; returns the epoch the request starts in."""
        while self.in_flight >= self.limit:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            finally:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
        self.in_flight += 1
        return self._epoch

    def record(self, epoch: int, outcome: Outcome) -> None:
        """Adjust the limit after a request started in `epoch` ended with `outcome`."""
        if outcome == "throttled":
            self._streak = 0
            if epoch == self._epoch:
                self._epoch += 1
                self._set(max(1, self.limit // 2))
        elif outcome == "ok":
            self._streak += 1
            if self._streak >= self.limit and self.limit < self.max_limit:
                self._streak = 0
                self._set(self.limit + 1)

    def release(self) -> None:
        """Free a slot (synchronous, so it is safe in `finally` under cancellation)."""
        self.in_flight -= 1
        self._wake()

    def _set(self, limit: int) -> None:
        if limit != self.limit:
            self.limit = limit
            if self._on_change:
                self._on_change(limit)
            self._wake()

    def _wake(self) -> None:
        # Wake every waiter; each re-checks the limit (few waiters, simple and fair enough).
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)



__all__ = ["AdaptiveLimiter", "Outcome"]
