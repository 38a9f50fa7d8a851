"""Reading GET /models: both record shapes, and where the next page is."""

from __future__ import annotations

from typing import Any, Mapping
from urllib.parse import urljoin, urlsplit

from ..catalog import ModelInfo, guess_tokenizer
from ..errors import ApiError

_EMBEDDING_HINTS = ("type", "model_type", "kind", "task", "mode", "category", "object")
_EMBEDDING_LISTS = ("capabilities", "tasks", "endpoints", "supported_endpoints")


def _positive_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    return value if isinstance(value, int) and value > 0 else None


def _says_embedding(*records: Mapping[str, Any]) -> bool:
    for record in records:
        for key in _EMBEDDING_HINTS:
            value = record.get(key)
            if isinstance(value, str) and "embed" in value.lower():
                return True
        for key in _EMBEDDING_LISTS:
            values = record.get(key)
            if isinstance(values, list) and any(isinstance(v, str) and "embed" in v.lower() for v in values):
                return True
    return False


def model_from_record(record: Any, known: Mapping[str, ModelInfo]) -> ModelInfo | None:
    """A ModelInfo from one /models record of either shape; None if it has no id.

    The OpenAI shape gives `max_model_len` (often null); the newer one gives
    `context_window` / `max_tokens`, at the top level or under `metadata`.
    Figures the record lacks stay None; `known` (the catalog) supplies the
    tokenizer, query template and kind of the models it knows.
    """
    if not isinstance(record, dict):
        return None
    model_id = record.get("id") or record.get("model")
    if not isinstance(model_id, str) or not model_id.strip():
        return None
    raw_meta = record.get("metadata")
    meta: dict[str, Any] = raw_meta if isinstance(raw_meta, dict) else {}

    def first(*keys: str) -> int | None:
        for holder in (record, meta):
            for key in keys:
                value = _positive_int(holder.get(key))
                if value is not None:
                    return value
        return None

    catalog_entry = known.get(model_id)
    is_embedding = (
        (catalog_entry is not None and catalog_entry.kind == "embedding")
        or _says_embedding(record, meta)
        or "embed" in model_id.lower()
    )
    return ModelInfo(
        id=model_id,
        kind="embedding" if is_embedding else "chat",
        context_length=first("max_model_len", "context_window", "context_length", "max_context_length"),
        tokenizer=catalog_entry.tokenizer if catalog_entry else guess_tokenizer(model_id),
        max_output_tokens=first("max_tokens", "max_output_tokens", "max_completion_tokens"),
        dims=first("dimensions", "embedding_dimensions", "dims"),
        query_template=catalog_entry.query_template if catalog_entry else "{query}",
        source="api",
        listed=catalog_entry.listed if catalog_entry else "api",
    )


def next_page(
    payload: Mapping[str, Any], url: str, records: list[Any], models_url: str
) -> tuple[str, dict[str, Any] | None] | None:
    """Where the next page of /models is, if the response says there is one.

    Understood, in order: a `next` link (absolute, or relative to this page;
    also under `links` or `pagination`), `has_more` with a cursor
    (`last_id`, else the last record's id) sent back as `after`, and
    `page` with `total_pages` sent back as `page`.

    Args:
        payload: this page's body.
        url: this page's URL (relative links resolve against it).
        records: this page's records.
        models_url: the /models URL under the configured base URL.

    Returns:
        (url, query parameters) of the next page, or None on the last page.

    Raises:
        ApiError: a `next` link pointing at another host (the key is never sent there).
    """
    link = payload.get("next")
    for holder in ("links", "pagination"):
        if link is None and isinstance(payload.get(holder), dict):
            link = payload[holder].get("next")
    if isinstance(link, str) and link:
        target = urljoin(url, link)
        if urlsplit(target)[:2] != urlsplit(models_url)[:2]:
            raise ApiError(f"GET /models: refusing to follow pagination to another host ({urlsplit(target).netloc})")
        return target, None
    if payload.get("has_more") is True:
        cursor = payload.get("last_id")
        if not cursor and records and isinstance(records[-1], dict):
            cursor = records[-1].get("id")
        return (models_url, {"after": cursor}) if cursor else None
    page, total = payload.get("page"), payload.get("total_pages")
    if isinstance(page, int) and isinstance(total, int) and page < total:
        return models_url, {"page": page + 1}
    return None


__all__ = ["model_from_record", "next_page"]
