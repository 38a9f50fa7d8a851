"""The model list: the built-in catalog, with what IO Intelligence's /models says laid over it."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from indexer.catalog import EXTRACTIVE_MODEL, Catalog, ModelInfo, default_catalog
from indexer.errors import ApiError

from .config import Settings


#: The offline "chat model": answers are sentences picked from the sources, so no
#: context length applies. Listed so that clients can discover it by name.
EXTRACTIVE = ModelInfo(id=EXTRACTIVE_MODEL, kind="chat", context_length=None, tokenizer="none", provider="local")


async def list_models(settings: Settings, remote: bool | None = None) -> tuple[list[ModelInfo], str]:
    """Models sorted by kind and id (the extractive one included), and a note for the user
    (empty when all went well).

    Args:
        remote: ask /models; None means "when an API key is set".
    """
    catalog = default_catalog()
    use_api = settings.remote if remote is None else remote
    note = ""
    if use_api and settings.api_key is None:
        note = "no IOINTELLIGENCE_API_KEY: showing the built-in catalog only"
    elif use_api:
        catalog, note = await _merged_with_api(settings, catalog)
    return sorted([*catalog, EXTRACTIVE], key=lambda m: (m.kind, m.id.lower())), note


async def _merged_with_api(settings: Settings, catalog: Catalog) -> tuple[Catalog, str]:
    client = settings.client_config().make_client()
    try:
        return catalog.merged(await client.list_models()), ""
    except ApiError as exc:
        return catalog, f"could not read /models ({exc.user_message()}); showing the built-in catalog"
    finally:
        await client.aclose()


def model_json(model: ModelInfo) -> dict[str, Any]:
    return {
        "id": model.id,
        "kind": model.kind,
        "context_length": model.context_length,
        "max_output_tokens": model.max_output_tokens,
        "embedding_limit": model.embedding_limit,
        "dims": model.dims,
        "provider": model.provider,
        "source": model.source,
        "listed": model.listed,
        "tokenizer": model.tokenizer,
        "daily_quota_tokens": model.daily_quota_tokens,
    }


def openai_model_json(model: ModelInfo) -> dict[str, Any]:
    """One item of OpenAI's model list, with iorag's figures beside the four standard fields.

    `created` is 0: neither the catalog nor the API says when a model was made.
    """
    fields = model_json(model)
    return {
        "id": fields.pop("id"),
        "object": "model",
        "created": 0,
        "owned_by": "iorag" if model.provider == "local" else "io-intelligence",
        **fields,
    }
class ModelListCache:
    """The model list for `/v1/models`, kept `ttl` seconds so callers cannot make every request an API call."""

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._lock = asyncio.Lock()
        self._value: tuple[list[dict[str, Any]], str] | None = None
        self._at = 0.0

    async def get(self, settings: Settings) -> tuple[list[dict[str, Any]], str]:
        """(models as JSON, note); a failed API read is kept only briefly, so it is retried soon."""
        async with self._lock:
            if self._value is None or time.monotonic() - self._at >= self.ttl:
                listed, note = await list_models(settings)
                self._value = ([openai_model_json(m) for m in listed], note)
                # A note means the API could not be read: try again sooner than the full ttl.
                self._at = time.monotonic() - (self.ttl * 0.9 if note and settings.remote else 0)
            return self._value
