"""Retrieval over one generation: dense (vectors), lexical (stored BM25) and hybrid (confidence-weighted score fusion)."""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Generic, Literal, Sequence, TypeVar

import numpy as np

from indexer.embedding import Embedder
from indexer.models import ScoredChunk
from indexer.store import Snapshot
from indexer.text import normalize_query

Mode = Literal["hybrid", "dense", "lexical"]
MODES: tuple[Mode, ...] = ("hybrid", "dense", "lexical")
K = TypeVar("K")
V = TypeVar("V")
#: What fused lists rank: row ids, or chunk ids.
Item = TypeVar("Item", int, str)
#: A search as the result cache knows it: (normalised query, k, mode).
SearchKey = tuple[str, int, Mode]
#: Searches to answer before a generation goes live, each with its query vector (None for lexical).
WarmPlan = Sequence[tuple[SearchKey, np.ndarray | None]]
#: Searches answered as (row id, score) lists, to install in a result cache.
Ranked = list[tuple[SearchKey, list[tuple[int, float]]]]

#: Each list contributes this many candidates (at least) to the fusion.
MIN_CANDIDATES = 100
#: What a chunk the lexical search did not return scores: it shares no term with the query.
LEXICAL_FLOOR = 0.0


@dataclass(frozen=True)
class ScoredList(Generic[Item]):
    """One search's candidates for a query, best first, and what it knows about the rest.

    `floor` is the score any item missing from the list would get at most (BM25:
    0, as it returns every chunk that shares a term; None when unknown, as for
    a dense top-k, where the list's last score is the bound). `depth` is how
    many items were asked for: a shorter list means everything else scored at
    most `floor`.
    """

    items: Sequence[tuple[Item, float]]
    depth: int
    floor: float | None = None


def fuse_scores(lists: Sequence[ScoredList[Item]]) -> list[tuple[Item, float]]:
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
    tables: list[tuple[dict[Item, float], float]] = []
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
    fused: dict[Item, float] = {}
    for table, confidence in tables:
        weight = confidence / total if total > 0 else 1.0 / len(tables)
        for item, value in table.items():
            fused[item] = fused.get(item, 0.0) + weight * value
    return sorted(fused.items(), key=lambda pair: (-pair[1], pair[0]))


def _top_z(values: np.ndarray) -> float:
    """How many standard deviations the best score lies above the mean (0 for a flat list)."""
    std = float(values.std())
    return max(float(values.max() - values.mean()) / std, 0.0) if std > 0 else 0.0


def rank(snapshot: Snapshot, query: str, k: int, mode: Mode, vector: np.ndarray | None) -> list[tuple[int, float]]:
    """One search's `k` best (row id, score), best first, reading no chunk (`vector`: None for lexical)."""
    if mode == "lexical" or vector is None:
        return [(i, score) for i, score in snapshot.lexical_search(query, k) if score > 0]
    if mode == "dense":
        return snapshot.dense_search(vector, k)
    # Fused on row ids: only the k rows kept are read afterwards, not every candidate.
    depth = max(k, MIN_CANDIDATES)
    lexical = [(i, score) for i, score in snapshot.lexical_search(query, depth) if score > 0]
    fused = fuse_scores([
        ScoredList(snapshot.dense_search(vector, depth), depth),
        ScoredList(lexical, depth, floor=LEXICAL_FLOOR),
    ])
    return fused[:k]


def rank_plan(
    snapshot: Snapshot, plan: WarmPlan, seconds: float
) -> Ranked:
    """`rank` each search of a warm-up plan, in order, until `seconds` have passed."""
    deadline = time.monotonic() + seconds
    ranked: Ranked = []
    for (query, k, mode), vector in plan:
        if time.monotonic() > deadline:
            break
        ranked.append(((query, k, mode), rank(snapshot, query, k, mode, vector)))
    return ranked


#: Query vectors kept: a repeated question costs no embedding call.
QUERY_CACHE_SIZE = 1024
#: Hits kept in result lists per retriever (1,024 lists of 8; ~12 MB of chunks at most): a repeated
#: search costs no search (exact: one retriever serves one generation).
RESULT_CACHE_HITS = 8192
#: Longer result lists are not kept: the cache is for the repeated questions of a search box, not for deep pages.
RESULT_CACHE_MAX_K = 100
#: Searches a new generation answers before it goes live: the latest ones that were asked again...
WARM_SEARCHES = 64
#: ... within this many seconds.
WARM_WINDOW = 30.0
#: Most seconds a warm-up takes (it delays the write that published the generation).
WARM_SECONDS = 1.0


class LruCache(Generic[K, V]):
    """A bounded mapping that forgets the least recently used entries; counts its hits and misses.

    `size` bounds the sum of the entries' costs (1 each unless `put` says otherwise).
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[K, tuple[V, int]] = OrderedDict()
        self._cost = 0
        self.hits = 0
        self.misses = 0

    def get(self, key: K) -> V | None:
        entry = self._items.get(key)
        if entry is None:
            self.misses += 1
            return None
        self.hits += 1
        self._items.move_to_end(key)
        return entry[0]

    def peek(self, key: K) -> V | None:
        """The value, if kept, without counting or refreshing it."""
        entry = self._items.get(key)
        return None if entry is None else entry[0]

    def put(self, key: K, value: V, cost: int = 1) -> None:
        if cost > self.size:
            return
        old = self._items.pop(key, None)
        if old is not None:
            self._cost -= old[1]
        self._items[key] = (value, cost)
        self._cost += cost
        while self._cost > self.size:
            _, (_, dropped) = self._items.popitem(last=False)
            self._cost -= dropped

    def __len__(self) -> int:
        return len(self._items)


class RepeatedSearches:
    """The searches asked again lately (answered from a result cache), latest last: what each new
    generation answers before it goes live.

    Shared by a retriever and its successors: a search in vogue stays in vogue across writes,
    however short-lived each generation is when writes stream in.
    """

    def __init__(self, size: int = WARM_SEARCHES, window: float = WARM_WINDOW) -> None:
        self.size = size
        self.window = window
        self._seen: OrderedDict[SearchKey, float] = OrderedDict()

    def note(self, key: SearchKey) -> None:
        self._seen[key] = time.monotonic()
        self._seen.move_to_end(key)
        if len(self._seen) > self.size:
            self._seen.popitem(last=False)

    def latest(self) -> list[SearchKey]:
        """Those asked again within the window, latest first."""
        since = time.monotonic() - self.window
        return [key for key, seen in reversed(self._seen.items()) if seen >= since]


class Retriever:
    """Searches one snapshot, with a cache of its results (they hold only for this generation).

    A search the cache cannot answer runs in a worker thread (the snapshot is
    thread-safe), so the event loop keeps serving cached answers and other
    requests meanwhile; concurrent requests for the same search share one run.
    Everything else (caches, counters) is touched on the event loop only, but
    for `warm`, which runs before the retriever serves anyone.
    """

    def __init__(
        self,
        snapshot: Snapshot,
        embedder: Embedder,
        *,
        query_cache_size: int = QUERY_CACHE_SIZE,
        result_cache_hits: int = RESULT_CACHE_HITS,
        query_vectors: LruCache[str, np.ndarray] | None = None,
        repeated: RepeatedSearches | None = None,
    ) -> None:
        """Args:
            query_vectors: a query-vector cache to share, e.g. the one of the retriever this one
                replaces, when both embed with the same embedder (vectors do not depend on the index).
            repeated: the searches asked again lately, to share likewise (`warm_plan` reads them).
        """
        self.snapshot = snapshot
        self.embedder = embedder
        self.lexical = snapshot.lexical()
        self.query_vectors: LruCache[str, np.ndarray] = (
            query_vectors if query_vectors is not None else LruCache(query_cache_size)
        )
        self._results: LruCache[SearchKey, tuple[ScoredChunk, ...]] = LruCache(result_cache_hits)
        self._running: dict[SearchKey, asyncio.Future[list[ScoredChunk]]] = {}
        #: Searches answered from the cache (asked again): what the next generation warms.
        self.repeated = repeated if repeated is not None else RepeatedSearches()
        #: Searches in worker threads now; a retired retriever closes its snapshot when none is left.
        self._in_threads = 0
        self._retired = False
        #: Queries served without an embedding call (the vector or the results were cached), and with one.
        self.cache_hits = 0
        self.cache_misses = 0

    async def query_vector(self, query: str) -> np.ndarray:
        """The query's embedding, from a small LRU cache when it was asked before."""
        vector = self.query_vectors.get(query)
        if vector is None:
            self.cache_misses += 1
            vector = await self.embedder.embed_query(query)
            self.query_vectors.put(query, vector)
        else:
            self.cache_hits += 1
        return vector

    async def search(self, query: str, k: int, mode: Mode = "hybrid") -> list[ScoredChunk]:
        """The `k` best chunks for `query`, best first."""
        query = normalize_query(query)
        if k < 1 or not len(self.lexical) or not query:
            return []
        key = (query, k, mode)
        cached = self._results.get(key) if k <= RESULT_CACHE_MAX_K else None
        if cached is not None:
            if mode != "lexical":
                self.cache_hits += 1
            self.repeated.note(key)
            return list(cached)
        running = self._running.get(key)
        if running is None:
            running = asyncio.ensure_future(self._search(key))
            self._running[key] = running
            running.add_done_callback(lambda _: self._running.pop(key, None))
        # Shielded: a caller that goes away does not cancel the run others wait for.
        return list(await asyncio.shield(running))

    async def _search(self, key: SearchKey) -> list[ScoredChunk]:
        query, k, mode = key
        vector = None if mode == "lexical" else await self.query_vector(query)
        self._in_threads += 1
        try:
            hits = await asyncio.to_thread(self._rank, query, k, mode, vector)
        finally:
            self._in_threads -= 1
            if self._retired and not self._in_threads:
                self.snapshot.close()
        if k <= RESULT_CACHE_MAX_K:
            self._results.put(key, tuple(hits), max(1, len(hits)))
        return hits

    def _rank(self, query: str, k: int, mode: Mode, vector: np.ndarray | None) -> list[ScoredChunk]:
        """The search itself (in a worker thread): no cache, no event loop."""
        return self.snapshot.scored_chunks(rank(self.snapshot, query, k, mode, vector))[0]

    def warm_plan(self) -> list[tuple[SearchKey, np.ndarray | None]]:
        """The searches a successor should answer before it goes live: the latest repeated ones,
        latest first, each with its cached query vector (None for lexical ones)."""
        plan: list[tuple[SearchKey, np.ndarray | None]] = []
        for key in self.repeated.latest():
            vector = None if key[2] == "lexical" else self.query_vectors.peek(key[0])
            if vector is not None or key[2] == "lexical":
                plan.append((key, vector))
        return plan

    def warm(self, plan: WarmPlan, seconds: float = WARM_SECONDS) -> int:
        """Answer `plan`'s searches into the result cache, for at most `seconds`; how many were.

        Call it in a worker thread before the retriever serves anyone: a write's
        new generation then answers the searches in vogue at once, instead of
        every one of them missing the cache right after the write. A server has
        them answered in another process instead (`service.warming`) and hands
        the results to `install`.
        """
        return self.install(rank_plan(self.snapshot, plan, seconds))

    def install(self, ranked: Sequence[tuple[SearchKey, Sequence[tuple[int, float]]]]) -> int:
        """Keep searches ranked elsewhere on this generation ((key, [(row id, score)])) in the result
        cache, reading their chunks in one query; how many were kept. Before the retriever serves."""
        kept = [(key, hits) for key, hits in ranked if key[1] <= RESULT_CACHE_MAX_K]
        for (key, _), chunks in zip(kept, self.snapshot.scored_chunks(*(hits for _, hits in kept))):
            self._results.put(key, tuple(chunks), max(1, len(chunks)))
        return len(kept)

    def retire(self) -> None:
        """Close the snapshot once no search runs on it any more (from the event loop)."""
        self._retired = True
        if not self._in_threads:
            self.snapshot.close()
