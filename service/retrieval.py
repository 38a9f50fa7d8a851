"""Retrieval over one snapshot: dense (FAISS), lexical (BM25) and hybrid (reciprocal rank fusion)."""

from __future__ import annotations

from collections import OrderedDict
from typing import Literal, Sequence

import numpy as np

from indexer.embedding import Embedder
from indexer.lexical import LexicalIndex
from indexer.models import Chunk, ScoredChunk
from indexer.store import Snapshot

Mode = Literal["hybrid", "dense", "lexical"]
MODES: tuple[Mode, ...] = ("hybrid", "dense", "lexical")

#: The usual RRF constant: damps the head so one list cannot dominate.
RRF_K = 60
#: Each list contributes this many candidates (at least) to the fusion.
MIN_CANDIDATES = 100


def reciprocal_rank_fusion(lists: Sequence[Sequence[ScoredChunk]], k: int, rrf_k: int = RRF_K) -> list[ScoredChunk]:
    """Fuse ranked lists: score = sum of 1 / (rrf_k + rank) over the lists a chunk appears in."""
    scores: dict[str, float] = {}
    chunks: dict[str, Chunk] = {}
    for ranked in lists:
        for rank, hit in enumerate(ranked, start=1):
            chunk_id = hit.chunk.chunk_id
            scores[chunk_id] = scores.get(chunk_id, 0.0) + 1.0 / (rrf_k + rank)
            chunks.setdefault(chunk_id, hit.chunk)
    # Ties break on chunk id so results are deterministic.
    best = sorted(scores, key=lambda cid: (-scores[cid], cid))[:k]
    return [ScoredChunk(chunks[cid], scores[cid]) for cid in best]


#: Query vectors kept per retriever: a repeated question costs no embedding call.
QUERY_CACHE_SIZE = 1024


class Retriever:
    """Searches one snapshot; built once per snapshot (the BM25 index is built here)."""

    def __init__(self, snapshot: Snapshot, embedder: Embedder, *, query_cache_size: int = QUERY_CACHE_SIZE) -> None:
        self.snapshot = snapshot
        self.embedder = embedder
        self.lexical = LexicalIndex(snapshot.chunks())
        self._query_vectors: OrderedDict[str, np.ndarray] = OrderedDict()
        self._query_cache_size = query_cache_size

    async def query_vector(self, query: str) -> np.ndarray:
        """The query's embedding, from a small LRU cache when it was asked before."""
        vector = self._query_vectors.get(query)
        if vector is None:
            vector = await self.embedder.embed_query(query)
            self._query_vectors[query] = vector
            if len(self._query_vectors) > self._query_cache_size:
                self._query_vectors.popitem(last=False)
        else:
            self._query_vectors.move_to_end(query)
        return vector

    async def search(self, query: str, k: int, mode: Mode = "hybrid") -> list[ScoredChunk]:
        """The `k` best chunks for `query`, best first."""
        if k < 1 or not len(self.lexical):
            return []
        if mode == "lexical":
            return self.lexical.search(query, k)
        depth = k if mode == "dense" else max(k, MIN_CANDIDATES)
        vector = await self.query_vector(query)
        dense = self.snapshot.search(vector.reshape(1, -1), depth)[0]
        if mode == "dense":
            return dense
        return reciprocal_rank_fusion([dense, self.lexical.search(query, depth)], k)
