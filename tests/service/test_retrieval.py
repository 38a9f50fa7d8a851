"""Retrievers: search modes, the result cache and warm-ups."""

from __future__ import annotations

import asyncio
import threading

import pytest

from indexer import Document, IndexDirectory, Indexer
from indexer.errors import StoreError
from service.retrieval import LruCache, Retriever

from ..conftest import HashEmbedder


def _two_documents(tmp_path) -> tuple[HashEmbedder, Indexer]:
    """An index of two short documents under tmp_path/idx, with its embedder and indexer."""
    embedder = HashEmbedder()
    indexer = Indexer(tmp_path / "idx", embedder=embedder)
    indexer.add_documents([Document(id="a", text="Alpha beta gamma."), Document(id="b", text="Delta beta.")])
    return embedder, indexer


def test_a_repeated_query_is_embedded_once(tmp_path) -> None:
    embedder = HashEmbedder()
    Indexer(tmp_path / "idx", embedder=embedder).add_documents([Document(id="a", text="Alpha beta gamma.")])

    async def run() -> None:
        with IndexDirectory(tmp_path / "idx").open_current() as snapshot:
            retriever = Retriever(snapshot, embedder, query_cache_size=2, result_cache_hits=0)
            for query in ["alpha", "alpha", "beta", "alpha", "gamma", "beta"]:
                for mode in ("dense", "hybrid"):
                    assert await retriever.search(query, 1, mode)

    asyncio.run(run())
    # alpha, beta, gamma, then beta again: it fell out when gamma came in (cache of 2).
    assert embedder.queries == ["alpha", "beta", "gamma", "beta"]


def test_repeated_searches_are_answered_from_the_generations_own_results(tmp_path) -> None:
    embedder, indexer = _two_documents(tmp_path)

    async def run() -> None:
        with IndexDirectory(tmp_path / "idx").open_current() as snapshot:
            retriever = Retriever(snapshot, embedder)
            first = await retriever.search("beta", 2, "hybrid")
            # Searching again reads nothing: the snapshot could even be gone.
            snapshot.close()
            again = await retriever.search("  beta ", 2, "hybrid")
            assert again == first and again is not first
            assert [h.chunk.doc_id for h in await retriever.search("beta", 2, "hybrid")] == [h.chunk.doc_id for h in first]
            again.clear()  # a caller's list is its own
            assert len(await retriever.search("beta", 2, "hybrid")) == 2
            assert retriever.cache_hits >= 2 and embedder.queries == ["beta"]
            vectors = retriever.query_vectors
        await indexer.aadd_documents([Document(id="c", text="Beta beta beta.")])
        # The next generation has its own results, and shares the query vectors.
        with IndexDirectory(tmp_path / "idx").open_current() as snapshot:
            retriever = Retriever(snapshot, embedder, query_vectors=vectors)
            hits = await retriever.search("beta", 3, "hybrid")
            assert "c" in [h.chunk.doc_id for h in hits]
            assert embedder.queries == ["beta"]
        await indexer.aclose()

    asyncio.run(run())


def test_searches_run_off_the_event_loop_once_per_key_and_a_retired_snapshot_waits_for_them(tmp_path) -> None:
    embedder = HashEmbedder()
    Indexer(tmp_path / "idx", embedder=embedder).add_documents([Document(id="a", text="Alpha beta gamma.")])
    snapshot = IndexDirectory(tmp_path / "idx").open_current()
    retriever = Retriever(snapshot, embedder)
    release = threading.Event()
    runs: list[str] = []
    rank = retriever._rank

    def slow_rank(query, k, mode, vector):  # type: ignore[no-untyped-def]
        runs.append(threading.current_thread().name)
        release.wait(10)
        return rank(query, k, mode, vector)

    retriever._rank = slow_rank  # type: ignore[method-assign]

    async def run() -> None:
        waiting = [asyncio.create_task(retriever.search("alpha", 1, "hybrid")) for _ in range(4)]
        await asyncio.sleep(0.2)
        # The loop is free while the search runs; retiring now must not pull the snapshot from under it.
        retriever.retire()
        assert len(runs) == 1 and runs[0] != threading.current_thread().name
        release.set()
        results = await asyncio.gather(*waiting)
        assert all([h.chunk.doc_id for h in r] == ["a"] for r in results)
        found.append(results[0][0].chunk.chunk_id)

    found: list[str] = []
    asyncio.run(run())
    assert len(runs) == 1
    with pytest.raises(StoreError, match="closed"):
        snapshot.get_chunks(found)


def test_a_new_generation_is_warmed_with_the_searches_asked_again(tmp_path) -> None:
    embedder, indexer = _two_documents(tmp_path)

    async def run() -> None:
        with IndexDirectory(tmp_path / "idx").open_current() as snapshot:
            old = Retriever(snapshot, embedder)
            for query in ("beta", "beta", "delta", "gamma", "gamma"):
                await old.search(query, 2, "hybrid")
            await old.search("alpha", 2, "lexical")
            await old.search("alpha", 2, "lexical")
            plan = old.warm_plan()
            # Asked again, latest first; "delta" was asked once and is not worth it.
            assert [key for key, _ in plan] == [("alpha", 2, "lexical"), ("gamma", 2, "hybrid"), ("beta", 2, "hybrid")]
        await indexer.aadd_documents([Document(id="c", text="Beta beta beta.")])
        snapshot = IndexDirectory(tmp_path / "idx").open_current()
        new = Retriever(snapshot, embedder, query_vectors=old.query_vectors)
        assert await asyncio.to_thread(new.warm, plan) == 3
        snapshot.close()  # warmed answers need no snapshot, and are the new generation's
        assert "c" in [h.chunk.doc_id for h in await new.search("beta", 2, "hybrid")]
        assert await new.search("alpha", 2, "lexical")
        assert new.warm(plan, seconds=-1) == 0
        await indexer.aclose()

    asyncio.run(run())


def test_the_lru_cache_bounds_the_cost_of_what_it_keeps() -> None:
    cache: LruCache[str, str] = LruCache(10)
    cache.put("a", "A", 4)
    cache.put("b", "B", 4)
    assert cache.get("a") == "A"  # now the most recent
    cache.put("c", "C", 4)  # 12 > 10: the least recent, b, goes
    assert cache.peek("b") is None and cache.peek("a") == "A" and cache.peek("c") == "C"
    cache.put("a", "A2", 6)  # replacing counts the new cost only: 6 + 4
    assert len(cache) == 2 and cache.get("a") == "A2"
    cache.put("huge", "H", 11)  # never fits: kept out, nothing evicted
    assert cache.peek("huge") is None and len(cache) == 2
    assert (cache.hits, cache.misses) == (2, 0)
