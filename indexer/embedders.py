"""Builds the embedder for a model id: local in-process, or remote over the upstream API.

The upstream's configuration is one frozen `ClientConfig` (built from
Settings in one place); `RemoteOptions` is its former name, kept for callers.
"""

from __future__ import annotations

from typing import Any

from .api import ClientConfig
from .catalog import Catalog, default_catalog
from .embedding import Embedder
from .errors import ConfigError

#: The former name of `ClientConfig` (one config, not two copies of it).
RemoteOptions = ClientConfig


def make_embedder(
    model_id: str,
    remote: ClientConfig | None = None,
    catalog: Catalog | None = None,
    *,
    limit: int | None = None,
    **client_options: Any,
) -> Embedder:
    """The embedder for `model_id`.

    Args:
        remote: how to reach the upstream (remote models only).
        catalog: where the model is described (default: the built-in catalog).
        limit: the model's token limit, stated by the caller (for models nothing else describes).
        client_options: passed to the API client (a shared `breaker`, `on_wait`).

    Raises:
        ConfigError: unknown model or limit, or a remote model without an API key.
    """
    model = (catalog or default_catalog()).resolve(model_id, "embedding", limit)
    if model.provider == "local":
        from .local import LocalEmbedder

        return LocalEmbedder(model)
    options = remote or ClientConfig()
    if not options.api_key:
        raise ConfigError(
            f"{model_id} runs on {options.profile.title} and needs an API key",
            hint="set IOINTELLIGENCE_API_KEY, or use the offline model local/all-MiniLM-L6-v2",
        )
    from .remote import DEFAULT_BATCH_ITEMS, RemoteEmbedder

    return RemoteEmbedder(
        options.make_client(**client_options),
        model,
        max_batch_items=options.batch_items or DEFAULT_BATCH_ITEMS,
        max_batch_tokens=options.batch_tokens,
    )
