"""Retrieval over one generation: dense (vectors), lexical (stored BM25) and hybrid (confidence-weighted score fusion)."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Literal, Sequence

import numpy as np

from indexer.embedding import Embedder
from indexer.models import Chunk, ScoredChunk
from indexer.store import Snapshot
from indexer.text import normalize_query

Mode = Literal["hybrid", "dense", "lexical"]
MODES: tuple[Mode, ...] = ("hybrid", "dense", "lexical")

#: The usual RRF constant: damps the head so one list cannot dominate.
RRF_K = 60
#: Each list contributes this many candidates (at least) to the fusion.
MIN_CANDIDATES = 100
#: What a chunk the lexical search did not return scores: it shares no term with the query.
LEXICAL_FLOOR = 0.0


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


@dataclass(frozen=True)
class ScoredList:
    """One search's candidates for a query, best first, and what it knows about the rest.

    `floor` is the score any item missing from the list would get at most (BM25:
    0, as it returns every chunk that shares a term; None when unknown, as for
    a dense top-k, where the list's last score is the bound). `depth` is how
    many items were asked for: a shorter list means everything else scored at
    most `floor`.
    """

    items: Sequence[tuple[str, float]]
    depth: int
    floor: float | None = None


def fuse_scores(lists: Sequence[ScoredList]) -> list[tuple[str, float]]:
    """Fuse scored lists by their normalised scores, each list weighted by its confidence on this query.

    Per list, scores are min-max normalised between its last and its best, so
    BM25's unbounded scores and cosines become comparable, and an item a list
    missed gets 0 from it. Each list is weighted
    by how far its best score stands out from the list's scores (its z-score,
    the list filled up to its depth with the floor): a unique exact match keeps
    its lead, while a list whose top is a crowd of near-equal scores (weak
    vectors, a vague query) has little say. Weights sum to 1; when no list
    stands out, they count equally. Nothing here is tuned per corpus.

    Args:
        lists: one `ScoredList` per search; higher scores are better.

    Returns:
        Every item that appears, with its fused score, best first (ties by item).
    """
    tables: list[tuple[dict[str, float], float]] = []
    for scored in lists:
        if not scored.items:
            continue
        values = np.array([score for _, score in scored.items], dtype=np.float64)
        low, high = float(values.min()), float(values.max())
        normalised = (values - low) / (high - low) if high > low else np.ones_like(values)
        floor = low if scored.floor is None else min(scored.floor, low)
        filled = np.concatenate([values, np.full(max(0, scored.depth - len(values)), floor)])
        tables.append(({item: float(v) for (item, _), v in zip(scored.items, normalised)}, _top_z(filled)))
    total = sum(confidence for _, confidence in tables)
    fused: dict[str, float] = {}
    for table, confidence in tables:
        weight = confidence / total if total > 0 else 1.0 / len(tables)
        for item, value in table.items():
            fused[item] = fused.get(item, 0.0) + weight * value
    return sorted(fused.items(), key=lambda pair: (-pair[1], pair[0]))


def _top_z(values: np.ndarray) -> float:
    """How many standard deviations the best score lies above the mean (0 for a flat list)."""
    std = float(values.std())
    return max(float(values.max() - values.mean()) / std, 0.0) if std > 0 else 0.0


def score_fusion(dense: Sequence[ScoredChunk], lexical: Sequence[ScoredChunk], k: int, depth: int) -> list[ScoredChunk]:
    """The `k` best chunks of `fuse_scores` over a dense and a lexical list fetched `depth` deep."""
    chunks: dict[str, Chunk] = {}
    for hit in (*dense, *lexical):
        chunks.setdefault(hit.chunk.chunk_id, hit.chunk)
    fused = fuse_scores(
        [
            ScoredList([(hit.chunk.chunk_id, hit.score) for hit in dense], depth),
            ScoredList([(hit.chunk.chunk_id, hit.score) for hit in lexical], depth, floor=LEXICAL_FLOOR),
        ]
    )
    return [ScoredChunk(chunks[cid], score) for cid, score in fused[:k]]


#: Query vectors kept per retriever: a repeated question costs no embedding call.
QUERY_CACHE_SIZE = 1024


class Retriever:
    """Searches one snapshot; built once per snapshot (the BM25 index is built here)."""

    def __init__(self, snapshot: Snapshot, embedder: Embedder, *, query_cache_size: int = QUERY_CACHE_SIZE) -> None:
        self.snapshot = snapshot
        self.embedder = embedder
        self.lexical = snapshot.lexical()
        self._query_vectors: OrderedDict[str, np.ndarray] = OrderedDict()
        self._query_cache_size = query_cache_size
        self.cache_hits = 0
        self.cache_misses = 0

    async def query_vector(self, query: str) -> np.ndarray:
        """The query's embedding, from a small LRU cache when it was asked before."""
        vector = self._query_vectors.get(query)
        if vector is None:
            self.cache_misses += 1
            vector = await self.embedder.embed_query(query)
            self._query_vectors[query] = vector
            if len(self._query_vectors) > self._query_cache_size:
                self._query_vectors.popitem(last=False)
        else:
            self.cache_hits += 1
            self._query_vectors.move_to_end(query)
        return vector

    async def search(self, query: str, k: int, mode: Mode = "hybrid") -> list[ScoredChunk]:
        """The `k` best chunks for `query`, best first."""
        query = normalize_query(query)
        if k < 1 or not len(self.lexical) or not query:
            return []
        if mode == "lexical":
            return self.lexical.search(query, k)
        depth = k if mode == "dense" else max(k, MIN_CANDIDATES)
        vector = await self.query_vector(query)
        dense = self.snapshot.search(vector.reshape(1, -1), depth)[0]
        if mode == "dense":
            return dense
        return score_fusion(dense, self.lexical.search(query, depth), k, depth)
