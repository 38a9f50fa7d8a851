"""The warm-up process: a new generation's repeated searches ranked in a child, exactly as in the server."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
from typing import Iterator

import pytest

from indexer import Document, IndexDirectory, Indexer
from service import RagService, Settings
from service.retrieval import Retriever, rank_plan
from service import warming as warming_module
from service.warming import WarmingProcess

from ..conftest import HashEmbedder

TEXTS = {
    "a": "Alpha beta gamma, the first letters.",
    "b": "Delta beta epsilon are further on.",
    "c": "Gamma rays and beta particles are radiation.",
    "d": "Zeta eta theta close the list.",
}


def _index(tmp_path, embedder: HashEmbedder) -> Indexer:
    indexer = Indexer(tmp_path / "idx", embedder=embedder)
    indexer.add_documents([Document(id=i, text=t) for i, t in TEXTS.items()])
    return indexer


def _plan(embedder: HashEmbedder) -> list:
    return [
        ((query, k, mode), None if mode == "lexical" else asyncio.run(embedder.embed_query(query)))
        for query, k, mode in (("beta", 3, "hybrid"), ("gamma rays", 2, "dense"), ("theta", 2, "lexical"))
    ]


@pytest.fixture
def indexed(tmp_path) -> tuple[HashEmbedder, list]:
    """An index of TEXTS under tmp_path/idx, its embedder, and a plan of three searches."""
    embedder = HashEmbedder()
    _index(tmp_path, embedder)
    return embedder, _plan(embedder)


@pytest.fixture
def warming() -> Iterator[WarmingProcess]:
    process = WarmingProcess()
    yield process
    process.close()


def test_the_child_ranks_a_plan_as_the_server_would_and_install_serves_it(tmp_path, indexed, warming) -> None:
    embedder, plan = indexed

    async def run() -> None:
        with IndexDirectory(tmp_path / "idx").open_current() as snapshot:
            ranked = await warming.rank(snapshot, plan, 30.0)
            assert ranked == rank_plan(snapshot, plan, 30.0)
            assert [hits for _, hits in ranked] and all(hits for _, hits in ranked)
            warmed = Retriever(snapshot, embedder)
            assert warmed.install(ranked) == 3
            fresh = Retriever(snapshot, embedder)
            for (query, k, mode), _ in plan:
                assert await warmed.search(query, k, mode) == await fresh.search(query, k, mode)
            # Answered from what was installed: the warmed retriever embedded no query.
            assert warmed.cache_misses == 0 and fresh.cache_misses == 2

    asyncio.run(run())


def test_warming_gives_up_quietly_when_the_generation_is_gone_or_the_child_dies(
    tmp_path, indexed, warming, monkeypatch
) -> None:
    _, plan = indexed

    async def run() -> None:
        with IndexDirectory(tmp_path / "idx").open_current() as snapshot:
            assert await warming.rank(snapshot, plan, 30.0)
            killed = warming._child
            assert killed is not None
            os.kill(killed.pid, signal.SIGKILL)
            killed.wait()
            # A child found dead is replaced before the plan is sent.
            assert await warming.rank(snapshot, plan, 30.0) == rank_plan(snapshot, plan, 30.0)
            stalled = warming._child
            assert stalled is not None and stalled is not killed
            # One that stops answering is given up once the plan's time and the start allowance are
            # over, and stopped; the next plan starts a new one.
            os.kill(stalled.pid, signal.SIGSTOP)
            monkeypatch.setattr(warming_module, "START_SECONDS", 0.5)
            assert await warming.rank(snapshot, plan, 0.0) == []
            assert stalled.poll() is not None and warming._child is None
            assert await warming.rank(snapshot, plan, 30.0) == rank_plan(snapshot, plan, 30.0)
            # The generation's files collected (a later write compacted): nothing to warm, no error.
            shutil.rmtree(snapshot.path / "lexical")
            assert await warming.rank(snapshot, plan, 30.0) == []

    asyncio.run(run())


def test_a_write_through_the_service_is_warmed_by_the_child_with_the_new_generation(tmp_path, indexed) -> None:
    embedder, _ = indexed
    settings = Settings(index_dir=tmp_path / "idx")

    async def run() -> None:
        async with RagService(settings, embedder=embedder) as rag:
            for _ in range(2):
                before = await rag.asearch("beta", 3)
            assert "e" not in [hit.chunk.doc_id for hit in before]
            await rag.aadd_documents([Document(id="e", text="Beta beta beta, beta again.")])
            assert rag._warming._child is not None  # ranked in the child, not the server's threads
            warmed = await rag.asearch("beta", 3)
            assert "e" in [hit.chunk.doc_id for hit in warmed]
            with IndexDirectory(tmp_path / "idx").open_current() as snapshot:
                fresh = await Retriever(snapshot, embedder).search("beta", 3)
            assert warmed == fresh
            # Writes back to back, nothing asked in between: the search in vogue is still warmed.
            await rag.aadd_documents([Document(id="f", text="Omega.")])
            await rag.aadd_documents([Document(id="g", text="Psi.")])
            assert rag._retriever is not None and rag._retriever._results.peek(("beta", 3, "hybrid"))

    asyncio.run(run())


def test_searches_stay_in_vogue_for_a_window_and_a_bounded_number() -> None:
    from service.retrieval import RepeatedSearches

    recent = RepeatedSearches(size=2, window=60.0)
    for query in ("a", "b", "a", "c"):
        recent.note((query, 8, "hybrid"))
    assert recent.latest() == [("c", 8, "hybrid"), ("a", 8, "hybrid")]
    recent.window = -1.0
    assert recent.latest() == []
