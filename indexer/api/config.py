"""ClientConfig: the one frozen description of how iorag reaches its upstream API.

Built from `Settings` in one place (`Settings.client_config()`); the client,
the remote embedder and the model list all read it. The key is held here but
never shown (`repr=False`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError
from .providers import Provider, provider_for

if TYPE_CHECKING:
    from .client import IOIntelligenceClient

DEFAULT_BASE_URL = "https://api.intelligence.io.solutions/api/v1"


@dataclass(frozen=True)
class ClientConfig:
    """How the client talks to the API; every wait is in seconds."""

    #: Bearer key (IOINTELLIGENCE_API_KEY); never in a repr, a message or a log.
    api_key: str | None = field(default=None, repr=False)
    base_url: str = DEFAULT_BASE_URL
    #: Provider profile name (`ionet`, `iio`); None: chosen from the base URL.
    provider: str | None = None
    #: Tenant id sent in the provider's tenant header on every request.
    tenant: str | None = None
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
    #: Calls in a row that fail for want of the upstream (5xx, timeouts, refused) before
    #: the circuit opens; while open, calls fail at once for `breaker_cooldown` seconds.
    breaker_threshold: int = 3
    breaker_cooldown: float = 30.0
    #: Inputs and tokens per embedding request (None: the model's defaults).
    batch_items: int | None = None
    batch_tokens: int | None = None

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
        if self.breaker_threshold < 1 or self.breaker_cooldown < 0:
            raise ConfigError("breaker_threshold must be at least 1 and breaker_cooldown 0 or more")
        profile = self.profile  # an unknown provider name fails here, not at the first request
        if self.tenant and profile.tenant_header is None:
            raise ConfigError(
                f"a tenant is set, but {profile.title} has no tenant header",
                hint="unset IOINTELLIGENCE_TENANT, or choose the provider with IORAG_PROVIDER",
            )

    @property
    def profile(self) -> Provider:
        """The provider profile: named by `provider`, else found from the base URL."""
        return provider_for(self.base_url, self.provider)

    @property
    def host(self) -> str:
        """host[:port] of the base URL, for messages."""
        return self.base_url.split("://", 1)[1].split("/", 1)[0]

    def make_client(self, **options: Any) -> "IOIntelligenceClient":
        """A new API client (the caller closes it); `options` go to its constructor.

        Raises:
            ConfigError: no API key.
        """
        from .client import IOIntelligenceClient

        if not self.api_key:
            raise ConfigError(f"calling {self.profile.title} needs an API key", hint="set IOINTELLIGENCE_API_KEY")
        return IOIntelligenceClient(self.api_key, self, **options)
