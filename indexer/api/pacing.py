"""RateWindow: pace requests from the API's rate-limit headers so the window is never overrun.

Both upstreams say on every response how many requests the current window
has left and when it resets (`X-RateLimit-Remaining` / `-Reset`, io.net also
as `x-ratelimit-remaining-requests` / `-reset-requests`). Knowing that, a
client can wait for the next window instead of learning the limit from 429s.

The count is kept conservative: requests still in flight are assumed to
count in the window their answer has not reported yet, so `remaining` is the
server's figure minus them. When the window ends, the next one starts with
`limit` minus what is still in flight. Where a server sends no such headers,
nothing is paced.
"""

from __future__ import annotations

import asyncio
import time
from typing import Awaitable, Callable, Mapping

from .retry import parse_delay

_REMAINING = ("x-ratelimit-remaining", "x-ratelimit-remaining-requests")
_RESET = ("x-ratelimit-reset", "x-ratelimit-reset-requests")
_LIMIT = ("x-ratelimit-limit", "x-ratelimit-limit-requests")

#: Called with the seconds about to be waited for the next window.
OnWait = Callable[[float], None]


def _first(headers: Mapping[str, str], names: tuple[str, ...]) -> str | None:
    for name in names:
        value = headers.get(name)
        if value is not None and value.strip():
            return value.strip()
    return None


def _count(value: str | None) -> int | None:
    try:
        return int(float(value)) if value is not None else None
    except ValueError:
        return None


class RateWindow:
    """Request pacing from rate-limit headers (one per client)."""

    #: Seconds added after a window's reset before sending into the next one (clock skew).
    guard = 0.05

    def __init__(
        self,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
        on_wait: OnWait | None = None,
        max_wait: float = 60.0,
    ) -> None:
        #: A window further off than this is no burst limit but a quota: the request goes
        #: and the API's answer (429 or 403) decides, under the quota rules.
        self.max_wait = max_wait
        self.limit: int | None = None
        self.remaining: int | None = None
        self.window_end: float | None = None
        self.in_flight = 0
        self.waits = 0
        self.waited = 0.0
        self._sleep = sleep
        self._clock = clock
        self._on_wait = on_wait
        self._gate = asyncio.Lock()

    async def acquire(self) -> None:
        """Wait until the window has room for one more request, and count it."""
        async with self._gate:  # one at a time, so waiters go in order and never overshoot together
            while True:
                now = self._clock()
                if self.window_end is not None and now >= self.window_end:
                    self.window_end = None
                    self.remaining = None if self.limit is None else max(0, self.limit - self.in_flight)
                if self.remaining is None or self.remaining > 0 or self.window_end is None:
                    break
                wait = self.window_end - now + self.guard
                if wait > self.max_wait:
                    break
                self.waits += 1
                self.waited += wait
                if self._on_wait is not None:
                    self._on_wait(wait)
                await self._sleep(wait)
                self.window_end = min(self.window_end, self._clock())  # a faked sleep still ends the window
            if self.remaining is not None:
                self.remaining -= 1
            self.in_flight += 1

    def release(self, headers: Mapping[str, str] | None) -> None:
        """A request ended; learn the window from its answer's headers (None: no answer)."""
        self.in_flight -= 1
        if headers is None:
            return
        remaining = _count(_first(headers, _REMAINING))
        limit = _count(_first(headers, _LIMIT))
        reset_text = _first(headers, _RESET)
        reset = parse_delay(reset_text)
        if limit is not None:
            self.limit = limit
        if remaining is None or reset is None:
            return
        now = self._clock()
        end = now + reset
        estimate = max(0, remaining - self.in_flight)
        # Whole-second resets jitter by up to a second between answers of one window.
        tolerance = 0.1 if reset_text and "." in reset_text else 1.0
        if self.window_end is None or end > self.window_end + tolerance:
            self.window_end, self.remaining = end, estimate  # a new window (or the first one heard of)
            return
        if end < self.window_end - tolerance:
            return  # a late answer from a window that is over
        self.remaining = estimate if self.remaining is None else min(self.remaining, estimate)

__all__ = ["OnWait", "RateWindow"]
