"""RagService as a library: sync and async, on the real local model."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from indexer import Document, IndexNotFoundError, Indexer
from service import QueryError, RagService, Settings

from ..conftest import ROOT, HashEmbedder


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("rag") / "index"
    Indexer(path).index([ROOT / "corpora"])
    return path


def test_sync_search_and_ask(index_dir: Path) -> None:
    with RagService(Settings(index_dir=index_dir)) as rag:
        hits = rag.search("How are quotas refreshed?", top_k=3)
        assert len(hits) == 3 and hits[0].score >= hits[-1].score
        answer = rag.ask("What does HTTP status 402 mean?")
        assert answer.model == "extractive" and answer.sources and answer.cited
        assert "tier" in answer.answer
        assert rag.health()["documents"] == 5


def test_async_ask_and_a_document_round_trip(tmp_path: Path, index_dir: Path) -> None:
    async def run() -> None:
        async with RagService(Settings(index_dir=tmp_path / "own", reload_interval=0)) as rag:
            with pytest.raises(IndexNotFoundError):
                await rag.asearch("anything")
            await rag.aadd_documents([Document(id="tea", text="Green tea is steeped at 80 degrees for two minutes.")])
            answer = await rag.aask("At what temperature is green tea steeped?")
            assert "80 degrees" in answer.answer and answer.sources[0].chunk.doc_id == "tea"
            report = await rag.adelete_documents(["tea", "nope"])
            assert report.removed == 1 and report.missing_ids == ["nope"]
            assert await rag.asearch("green tea") == []

    asyncio.run(run())


def test_back_to_back_writes_embed_with_the_services_own_embedder(tmp_path: Path) -> None:
    # No search in between, so the service's retriever is a generation behind at the second write:
    # the model only this embedder knows must still embed it (the catalog has never heard of it).
    embedder = HashEmbedder(model_id="custom/only-here")
    Indexer(tmp_path / "idx", embedder=embedder).add_documents([Document(id="a", text="Alpha beta gamma.")])

    async def run() -> None:
        async with RagService(Settings(index_dir=tmp_path / "idx"), embedder=embedder) as rag:
            assert [h.chunk.doc_id for h in await rag.asearch("alpha", 1)] == ["a"]
            for doc_id, text in (("b", "Delta epsilon."), ("c", "Zeta eta theta.")):
                report = await rag.aadd_documents([Document(id=doc_id, text=text)])
                assert report.added == 1
            assert [h.chunk.doc_id for h in await rag.asearch("zeta eta theta", 1)] == ["c"]

    asyncio.run(run())
    assert "Zeta eta theta." in embedder.embedded


def test_empty_question_is_a_query_error(index_dir: Path) -> None:
    with RagService(Settings(index_dir=index_dir)) as rag:
        with pytest.raises(QueryError):
            rag.ask("   ")
