"""The one place that builds an Indexer from Settings (the CLI and RagService both use it)."""

from __future__ import annotations

from typing import Any, Callable

from indexer.catalog import Catalog
from indexer.embedding import Embedder
from indexer.pipeline import Indexer, ProgressFn, StageFn

from .config import Settings


def build_indexer(
    settings: Settings,
    *,
    embedder: Embedder | None = None,
    catalog: Catalog | None = None,
    progress: ProgressFn | None = None,
    on_stage: StageFn | None = None,
    on_wait: Callable[[float], None] | None = None,
    holder: str | None = None,
) -> Indexer:
    """An Indexer over the settings' collection, with their model, chunking, API and backend choices.

    Args:
        embedder: reuse this embedder (it stays the caller's to close).
        progress: told (done, total) as embeddings arrive.
        on_stage: told (stage, done, total) through every stage, scanning and chunking included.
        on_wait: told how long the API client waits for a rate-limit window.
        holder: who writes, as a busy index tells other writers (e.g. "the iorag server").
    """
    extra: dict[str, Any] = {"holder": holder} if holder else {}
    return Indexer(
        settings.index_path,
        embedding_model=settings.embedding_model,
        default_embedding_model=settings.embedding_model or settings.default_embedding_model(),
        embedder=embedder,
        chunk_tokens=settings.chunk_tokens,
        overlap=settings.chunk_overlap,
        remote=settings.client_config(),
        catalog=catalog,
        progress=progress,
        on_stage=on_stage,
        embedding_limit=settings.embedding_limit,
        on_wait=on_wait,
        dense_backend=settings.vector_backend,
        milvus_uri=settings.milvus_uri,
        milvus_token=settings.milvus_secret(),
        **extra,
    )
