"""Former home of the embedding cache, now `indexer.store.cache`; kept so `indexer.cache` imports still work."""

from __future__ import annotations

from .store.cache import EmbeddingCache, translate_sqlite_error

__all__ = ["EmbeddingCache", "translate_sqlite_error"]
