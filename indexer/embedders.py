"""Builds the embedder for a model id: local in-process, or IO Intelligence."""

from __future__ import annotations

from dataclasses import dataclass

from .catalog import Catalog, default_catalog
from .embedding import Embedder
from .errors import ConfigError


@dataclass(frozen=True)
class RemoteOptions:
    """How to reach IO Intelligence; `api_key` is required for remote models."""

    api_key: str | None = None
    base_url: str = "https://api.intelligence.io.solutions/api/v1"
    concurrency: int = 4
    timeout: float = 60.0
    max_retries: int = 6
    batch_items: int | None = None
    batch_tokens: int | None = None


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
    from .api import ClientConfig, IOIntelligenceClient
    from .remote import RemoteEmbedder

    client = IOIntelligenceClient(
        options.api_key,
        ClientConfig(
            base_url=options.base_url,
            timeout=options.timeout,
            max_retries=options.max_retries,
            concurrency=options.concurrency,
        ),
    )
    kwargs: dict[str, int] = {}
    if options.batch_items:
        kwargs["max_batch_items"] = options.batch_items
    if options.batch_tokens:
        kwargs["max_batch_tokens"] = options.batch_tokens
    return RemoteEmbedder(client, model, **kwargs)
