"""Embedding texts for callers (OpenAI's /v1/embeddings) with the index's own embedding model."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from indexer import Embedder, plan_batches

from .errors import QueryError

#: Most inputs in one request (OpenAI's own cap).
MAX_INPUTS = 2048


@dataclass(frozen=True)
class Embeddings:
    """Unit vectors, one row per input in input order, and the tokens they took."""

    model: str
    vectors: np.ndarray
    tokens: int


async def embed_texts(embedder: Embedder, texts: Sequence[str]) -> Embeddings:
    """Embed `texts` as documents (no query template), each checked against the model's limit.

    Nothing is truncated: an input over the limit is refused, naming its position.

    Raises:
        QueryError: no input, too many inputs, an empty input, or one over the model's token limit.
    """
    texts = list(texts)
    if not texts:
        raise QueryError("input is empty: send a string or a list of strings")
    if len(texts) > MAX_INPUTS:
        raise QueryError(f"input has {len(texts)} items; at most {MAX_INPUTS} are accepted in one request")
    limit = embedder.model.embedding_limit or embedder.model.context_length
    counts = embedder.counter.count_many(texts)
    for position, (text, tokens) in enumerate(zip(texts, counts)):
        if not text.strip():
            raise QueryError(f"input[{position}] is empty")
        if limit is not None and tokens > limit:
            raise QueryError(
                f"input[{position}] has {tokens} tokens; {embedder.model.id} takes at most {limit} per input",
                hint="split the text into shorter pieces",
            )
    groups = plan_batches(counts, embedder.max_batch_items, embedder.max_batch_tokens)
    slots = asyncio.Semaphore(max(1, embedder.concurrency))

    async def run(group: list[int]) -> np.ndarray:
        async with slots:
            return await embedder.embed_batch([texts[i] for i in group])

    parts = await asyncio.gather(*(run(group) for group in groups))
    vectors = np.zeros((len(texts), parts[0].shape[1]), dtype=np.float32)
    for group, part in zip(groups, parts):
        vectors[group] = part
    return Embeddings(model=embedder.model.id, vectors=vectors, tokens=sum(counts))
