"""CircuitBreaker: stop waiting on an upstream that is down.

After `threshold` calls in a row fail for want of the upstream (5xx after
every retry, timeouts, refused connections, unknown host), the circuit opens:
for `cooldown` seconds every call fails at once, naming the host. Then one
call is let through (half-open): its success closes the circuit, its failure
opens it again. One breaker may be shared by several clients of one upstream
(the service's embedder and chat client), so `/v1/health` can report it.
"""

from __future__ import annotations

import time
from typing import Callable, Literal

from ..errors import ServiceUnavailableError
from .retry import human_seconds

State = Literal["closed", "open", "half-open"]


class CircuitBreaker:
    def __init__(self, threshold: int = 3, cooldown: float = 30.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.threshold = threshold
        self.cooldown = cooldown
        self.failures = 0
        self.opened_at: float | None = None
        self.last_error = ""
        self._probing = False
        self._clock = clock

    @property
    def state(self) -> State:
        if self.opened_at is None:
            return "closed"
        return "open" if self._clock() - self.opened_at < self.cooldown else "half-open"

    def check(self, host: str, what: str) -> None:
        """Let a call through, or raise at once while the circuit is open.

        Raises:
            ServiceUnavailableError: the upstream is considered down.
        """
        state = self.state
        if state == "closed":
            return
        if state == "half-open" and not self._probing:
            self._probing = True  # this call is the probe
            return
        assert self.opened_at is not None
        left = max(0.0, self.cooldown - (self._clock() - self.opened_at))
        raise ServiceUnavailableError(
            f"{what}: {host} is down ({self.failures} calls in a row failed: {self.last_error}); "
            f"not trying again for {human_seconds(left)}",
            hint="the upstream API is unreachable or failing; iorag tries again by itself after the pause",
        )

    def success(self) -> None:
        self.failures = 0
        self.opened_at = None
        self._probing = False

    def abandon(self) -> None:
        """A call ended without telling (cancelled): let another call be the probe."""
        self._probing = False

    def failure(self, reason: str) -> None:
        self.failures += 1
        self.last_error = reason
        if self._probing or self.failures >= self.threshold:
            self.opened_at = self._clock()
        self._probing = False


__all__ = ["CircuitBreaker", "State"]
