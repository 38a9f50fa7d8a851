"""The one interface every embedder implements, and how inputs are grouped into requests."""

from __future__ import annotations

from typing import Protocol, Sequence

import numpy as np

from .catalog import ModelInfo
from .tokens import TokenCounter

#: float32 array of shape (n, dims), each row L2-normalized.
Vectors = np.ndarray


class Embedder(Protocol):
    """Turns texts into unit vectors for one embedding model.

    `embed_batch` is one request's worth of documents (the remote embedder
    sends exactly one HTTP call per batch, retries and splits aside);
    the caller groups inputs with `plan_batches` and runs up to
    `concurrency` batches at once.
    """

    model: ModelInfo

    # Read-only members: an embedder may hold them as attributes or work them out.
    @property
    def counter(self) -> TokenCounter:
        """Counts tokens as the model does."""
        ...

    @property
    def concurrency(self) -> int:
        """How many `embed_batch` calls may be in flight together."""
        ...

    @property
    def max_batch_items(self) -> int:
        """Most inputs in one batch."""
        ...

    @property
    def max_batch_tokens(self) -> int:
        """Most tokens (under `counter`) in one batch."""
        ...

    async def embed_batch(self, texts: Sequence[str]) -> Vectors:
        """Embed documents as they are (no prefix); rows in input order."""
        ...

    async def embed_query(self, text: str) -> Vectors:
        """Embed one search query with the model's query template; shape (dims,)."""
        ...

    async def aclose(self) -> None:
        """Release connections or sessions."""
        ...


def plan_batches(token_counts: Sequence[int], max_items: int, max_tokens: int) -> list[list[int]]:
    """Group inputs, in order, into the fewest batches within both limits.

    Greedy in input order is optimal here: every batch but the last is full on
    one of the two limits. An input larger than `max_tokens` goes alone.

    Returns:
        Lists of input positions, one list per request.
    """
    if max_items < 1 or max_tokens < 1:
        raise ValueError("batch limits must be positive")
    batches: list[list[int]] = []
    current: list[int] = []
    current_tokens = 0
    for position, tokens in enumerate(token_counts):
        if current and (len(current) >= max_items or current_tokens + tokens > max_tokens):
            batches.append(current)
            current, current_tokens = [], 0
        current.append(position)
        current_tokens += tokens
    if current:
        batches.append(current)
    return batches


def normalize(vectors: np.ndarray) -> Vectors:
    """Rows scaled to unit length (zero rows stay zero), as float32."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)
