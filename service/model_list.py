"""The model list: the built-in catalog, with what IO Intelligence's /models says laid over it."""

from __future__ import annotations

from typing import Any

from indexer.catalog import Catalog, ModelInfo, default_catalog
from indexer.errors import ApiError

from .config import Settings


async def list_models(settings: Settings, remote: bool | None = None) -> tuple[list[ModelInfo], str]:
    """Models sorted by kind and id, and a note for the user (empty when all went well).

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
    return sorted(catalog, key=lambda m: (m.kind, m.id.lower())), note


async def _merged_with_api(settings: Settings, catalog: Catalog) -> tuple[Catalog, str]:
    client = settings.remote_options().make_client()
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
