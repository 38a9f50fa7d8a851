"""Builds the embedder for a model id: local in-process, or remote over the upstream API.

The upstream's configuration is one frozen `ClientConfig` (built from
Settings in one place); `RemoteOptions` is its former name, kept for callers.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from .api import ClientConfig
from .catalog import Catalog, ModelInfo, default_catalog
from .embedding import Embedder, Vectors
from .errors import ConfigError
from .tokens import TokenCounter, counter_for

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


class LazyEmbedder:
    """An `Embedder` built on first use, so work that needs no vectors needs no embedder.

    A lexical search on an index built with a remote model then needs no API key,
    and one on a local-model index loads no ONNX session.
    """

    def __init__(self, model: ModelInfo, build: Callable[[], Embedder]) -> None:
        self.model = model
        self._build = build
        self._built: Embedder | None = None

    @property
    def built(self) -> Embedder:
        """The real embedder (built now if it was not yet).

        Raises:
            ConfigError: it cannot be built (a remote model without an API key...).
        """
        if self._built is None:
            self._built = self._build()
        return self._built

    @property
    def counter(self) -> TokenCounter:
        # Every embedder counts with its model's counter; no need to build one for it.
        return counter_for(self.model)

    @property
    def concurrency(self) -> int:
        return self.built.concurrency

    @property
    def max_batch_items(self) -> int:
        return self.built.max_batch_items

    @property
    def max_batch_tokens(self) -> int:
        return self.built.max_batch_tokens

    async def embed_batch(self, texts: Sequence[str]) -> Vectors:
        return await self.built.embed_batch(texts)

    async def embed_query(self, text: str) -> Vectors:
        return await self.built.embed_query(text)

    async def aclose(self) -> None:
        if self._built is not None:
            await self._built.aclose()
