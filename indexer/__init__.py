"""iorag's write path and shared core: documents -> chunks -> embeddings -> vector store.

    from indexer import Indexer
    Indexer("./.iorag").index(["docs/"])
"""

from .catalog import Catalog, ModelInfo, default_catalog
from .chunking import ChunkingConfig, chunk_document
from .embedders import RemoteOptions, make_embedder
from .embedding import Embedder, plan_batches
from .errors import (
    ApiError,
    AuthenticationError,
    ConfigError,
    ContextLengthError,
    DimensionMismatchError,
    EmbeddingError,
    IndexLockedError,
    IndexNotFoundError,
    IoragError,
    PaymentRequiredError,
    QuotaExhaustedError,
    RateLimitError,
    SourceError,
    StoreError,
)
from .models import Chunk, Document, ScoredChunk
from .pipeline import Indexer, IndexReport
from .sources import scan
from .store import IndexDirectory, Snapshot
from .text import lexical_text, normalize_query, sentence_spans
from .tokens import TokenCounter, counter_for

__all__ = [
    "ApiError",
    "AuthenticationError",
    "Catalog",
    "Chunk",
    "ChunkingConfig",
    "ConfigError",
    "ContextLengthError",
    "DimensionMismatchError",
    "Document",
    "Embedder",
    "EmbeddingError",
    "IndexDirectory",
    "IndexLockedError",
    "IndexNotFoundError",
    "IndexReport",
    "Indexer",
    "IoragError",
    "ModelInfo",
    "PaymentRequiredError",
    "QuotaExhaustedError",
    "RateLimitError",
    "RemoteOptions",
    "ScoredChunk",
    "Snapshot",
    "SourceError",
    "StoreError",
    "TokenCounter",
    "chunk_document",
    "counter_for",
    "default_catalog",
    "lexical_text",
    "make_embedder",
    "normalize_query",
    "plan_batches",
    "scan",
    "sentence_spans",
]
