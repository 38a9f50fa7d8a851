"""ClientConfig: how the client talks to the API (URL, timeouts, retries, concurrency)."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigError

DEFAULT_BASE_URL = "https://api.intelligence.io.solutions/api/v1"


@dataclass(frozen=True)
class ClientConfig:
    """How the client talks to the API; every wait is in seconds."""

    base_url: str = DEFAULT_BASE_URL
    #: Read/write/pool timeout of one HTTP call.
    timeout: float = 60.0
    connect_timeout: float = 10.0
    #: Retries after the first attempt (429, 5xx, timeouts, dropped connections).
    max_retries: int = 6
    #: Longest single wait. A Retry-After asking for more ends the call at once.
    max_retry_wait: float = 60.0
    #: Time one call may spend, attempts and waits together, before giving up.
    total_retry_budget: float = 300.0
    #: Most requests in flight; the adaptive limit starts here and never exceeds it.
    concurrency: int = 4
    #: How long to keep waiting on an exhausted quota (0: give up at once).
    quota_wait: float = 0.0
    #: Ceiling of the first backoff when no Retry-After is given; it doubles per
    #: retry and the wait is drawn uniformly below it (full jitter). Tests use ~0.
    backoff_base: float = 0.5
    #: Most pages of /models followed (guards against a server that loops).
    max_model_pages: int = 50

    def __post_init__(self) -> None:
        if not self.base_url.startswith(("http://", "https://")):
            raise ConfigError(f"base URL must start with http:// or https://: {self.base_url!r}")
        if self.concurrency < 1:
            raise ConfigError(f"concurrency must be at least 1, not {self.concurrency}")
        if self.max_retries < 0:
            raise ConfigError(f"max_retries must be 0 or more, not {self.max_retries}")
        if min(self.timeout, self.connect_timeout) <= 0:
            raise ConfigError("timeouts must be positive")
        if min(self.max_retry_wait, self.total_retry_budget, self.quota_wait, self.backoff_base) < 0:
            raise ConfigError("waits and budgets cannot be negative")
