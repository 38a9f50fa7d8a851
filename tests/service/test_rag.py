"""RagService as a library: sync and async, on the real local model."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from indexer import Document, IndexNotFoundError, Indexer
from service import QueryError, RagService, Settings

from ..conftest import ROOT


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


def test_empty_question_is_a_query_error(index_dir: Path) -> None:
    with RagService(Settings(index_dir=index_dir)) as rag:
        with pytest.raises(QueryError):
            rag.ask("   ")
