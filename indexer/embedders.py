"""Builds the embedder for a model id (local in-process, or IO Intelligence), and the API client.

`RemoteOptions` is the one place that turns settings into a `ClientConfig`
and a client: the remote embedder, the chat answerer and the model list all
get theirs from `RemoteOptions.make_client()`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .api import DEFAULT_BASE_URL, ClientConfig, IOIntelligenceClient
from .catalog import Catalog, default_catalog
from .embedding import Embedder
from .errors import ConfigError


@dataclass(frozen=True)
class RemoteOptions:
    """How to reach IO Intelligence; `api_key` is required for remote models (never in the repr)."""

    api_key: str | None = field(default=None, repr=False)
    base_url: str = DEFAULT_BASE_URL
    concurrency: int = 4
    timeout: float = 60.0
    max_retries: int = 6
    #: Seconds to keep waiting on an exhausted quota (0: stop at once).
    quota_wait: float = 0.0
    #: First backoff ceiling in seconds when a retryable failure gives no Retry-After.
    backoff_base: float = 0.5
    batch_items: int | None = None
    batch_tokens: int | None = None

    def client_config(self) -> ClientConfig:
        """The client configuration these options describe.

        Raises:
            ConfigError: a value the client refuses (bad URL, negative wait...).
        """
        return ClientConfig(
            base_url=self.base_url,
            timeout=self.timeout,
            max_retries=self.max_retries,
            concurrency=self.concurrency,
            quota_wait=self.quota_wait,
            backoff_base=self.backoff_base,
        )

    def make_client(self) -> IOIntelligenceClient:
        """A new API client (the caller closes it).

        Raises:
            ConfigError: no API key, or a bad setting.
        """
        if not self.api_key:
            raise ConfigError("calling IO Intelligence needs an API key", hint="set IOINTELLIGENCE_API_KEY")
        return IOIntelligenceClient(self.api_key, self.client_config())


def make_embedder(model_id: str, remote: RemoteOptions | None = None, catalog: Catalog | None = None) -> Embedder:
    """The embedder for `model_id`.

    Raises:
        ConfigError: unknown model, or a remote model without an API key.
    """
    model = (catalog or default_catalog()).get(model_id, kind="embedding")
    if model.provider == "local":
        from .local import LocalEmbedder

        return LocalEmbedder(model)
    options = remote or RemoteOptions()
    if not options.api_key:
        raise ConfigError(
            f"{model_id} runs on IO Intelligence and needs an API key",
            hint="set IOINTELLIGENCE_API_KEY, or use the offline model local/all-MiniLM-L6-v2",
        )
    from .remote import DEFAULT_BATCH_ITEMS, RemoteEmbedder

    return RemoteEmbedder(
        options.make_client(),
        model,
        max_batch_items=options.batch_items or DEFAULT_BATCH_ITEMS,
        max_batch_tokens=options.batch_tokens,
    )
