"""The retry policy: which failures are retried, how long to wait, when to give up.

429, 408, 5xx, timeouts and dropped or refused connections are retried with
exponential backoff and full jitter, or after exactly the delay a
`Retry-After` header asks for (seconds or an HTTP date). An exhausted quota
is waited on only while `ClientConfig.quota_wait` lasts. The policy plugs
into tenacity; `client.py` wraps one HTTP call in it.
"""

from __future__ import annotations

import email.utils
import logging
import math
import random
import re
import time
from typing import Literal

import tenacity

from ..errors import ApiError
from .config import ClientConfig
from .results import ClientStats

log = logging.getLogger("indexer.api")

FailureKind = Literal["rate_limit", "quota", "server", "unavailable", "timeout", "connection"]


class Failure(Exception):
    """A retryable failure of one attempt, carrying the error to raise if retries run out."""

    def __init__(self, kind: FailureKind, error: ApiError, *, retry_after: float | None = None) -> None:
        super().__init__(str(error))
        self.kind = kind
        self.error = error
        self.retry_after = retry_after


class RetryPolicy:
    """When one call retries, how long it waits, when it gives up (one instance per call)."""

    def __init__(self, config: ClientConfig, stats: ClientStats, rng: random.Random, what: str) -> None:
        self.config = config
        self.stats = stats
        self.rng = rng
        self.what = what
        self.transient_failures = 0
        self.quota_waited = 0.0
        self.reason = ""

    def should_retry(self, state: tenacity.RetryCallState) -> bool:
        failure = state.outcome.exception() if state.outcome else None
        if not isinstance(failure, Failure):
            return False
        if failure.kind == "quota":
            room = self.config.quota_wait - self.quota_waited
            if room <= 0 or (failure.retry_after is not None and failure.retry_after > room):
                return False
            return True
        self.transient_failures += 1
        return True

    def wait(self, state: tenacity.RetryCallState) -> float:
        failure = state.outcome.exception() if state.outcome else None
        assert isinstance(failure, Failure)
        if failure.retry_after is not None:
            return failure.retry_after
        if failure.kind == "quota":
            # Refresh time unknown: look again every max_retry_wait while quota_wait lasts.
            return min(self.config.max_retry_wait, self.config.quota_wait - self.quota_waited)
        ceiling = self.config.backoff_base * 2 ** max(0, self.transient_failures - 1)
        return self.rng.uniform(0.0, min(self.config.max_retry_wait, ceiling))

    def should_stop(self, state: tenacity.RetryCallState) -> bool:
        failure = state.outcome.exception() if state.outcome else None
        assert isinstance(failure, Failure)
        upcoming = state.upcoming_sleep
        if failure.kind == "quota":
            if self.quota_waited + upcoming > self.config.quota_wait:
                self.reason = f"quota_wait of {self.config.quota_wait:g} s used up"
                return True
            return False
        if self.transient_failures > self.config.max_retries:
            self.reason = f"after {state.attempt_number} attempts"
            return True
        if upcoming > self.config.max_retry_wait:
            self.reason = (
                f"the server asked to wait {upcoming:.0f} s, more than max_retry_wait "
                f"({self.config.max_retry_wait:g} s)"
            )
            return True
        # idle_for counts waits even when the sleep is faked (tests), wall time counts real ones.
        spent = max(state.seconds_since_start or 0.0, state.idle_for)
        if spent + upcoming > self.config.total_retry_budget:
            self.reason = (
                f"after {state.attempt_number} attempts in {spent:.1f} s "
                f"(retry budget {self.config.total_retry_budget:g} s)"
            )
            return True
        return False

    def before_sleep(self, state: tenacity.RetryCallState) -> None:
        failure = state.outcome.exception() if state.outcome else None
        wait = state.upcoming_sleep
        self.stats.retries += 1
        self.stats.retry_wait += wait
        if isinstance(failure, Failure) and failure.kind == "quota":
            self.quota_waited += wait
        log.info("%s: %s; retry %d in %.2f s", self.what, failure, state.attempt_number, wait)

    def final_error(self, failure: Failure) -> ApiError:
        """The error to raise once the policy has given up on `failure`."""
        error = failure.error
        if failure.kind == "quota" or not self.reason:
            return error
        return type(error)(
            f"{error} ({self.reason})", status_code=error.status_code, retry_after=error.retry_after, hint=error.hint
        )


_DURATION = re.compile(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m(?!s))?(?:(\d+(?:\.\d+)?)s)?(?:(\d+(?:\.\d+)?)ms)?")


def parse_delay(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After or x-ratelimit-reset value, or None if unreadable.

    Accepts seconds ("2", "0.5"), an epoch timestamp (> 1e9), a duration
    ("1m30s", "250ms") or an HTTP date.
    """
    if value is None or not value.strip():
        return None
    value = value.strip()
    now = time.time() if now is None else now
    try:
        number = float(value)
    except ValueError:
        pass
    else:
        if not math.isfinite(number) or number < 0:
            return None
        return max(0.0, number - now) if number > 1e9 else number
    match = _DURATION.fullmatch(value)
    if match and any(match.groups()):
        h, m, s, ms = (float(g) if g else 0.0 for g in match.groups())
        return h * 3600 + m * 60 + s + ms / 1000
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now)


def human_seconds(seconds: float) -> str:
    """`45 s`, `12 min` or `8.0 h`."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


__all__ = ["Failure", "FailureKind", "RetryPolicy", "human_seconds", "parse_delay"]
