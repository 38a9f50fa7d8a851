"""Score fusion: confidence-weighted, so a strong exact match survives a weak dense list."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from indexer import Document, IndexDirectory, Indexer
from service.retrieval import LEXICAL_FLOOR, Retriever, ScoredList, fuse_scores

from ..conftest import ROOT, HashEmbedder

SCIFACT = ROOT.parent / "shared" / "datasets" / "scifact" / "corpus.jsonl"
EXACT = "Zebra migration patterns correlate with quasar luminosity in this study."


def test_a_confident_list_outweighs_a_flat_one() -> None:
    # Lexical: one item far ahead. Dense: a crowd of near-equal scores that ranks it last.
    lexical = ScoredList([("exact", 7.32), ("other", 3.09), ("third", 2.5), ("fourth", 2.4)], depth=100, floor=LEXICAL_FLOOR)
    dense = ScoredList([(f"n{i}", 0.50 - i * 0.001) for i in range(99)] + [("other", 0.401)], depth=100)
    fused = fuse_scores([dense, lexical])
    assert fused[0][0] == "exact"


def test_agreement_wins_and_order_is_deterministic() -> None:
    a = ScoredList([("x", 0.9), ("y", 0.8), ("z", 0.1)], depth=3)
    b = ScoredList([("y", 5.0), ("x", 1.0), ("w", 0.5)], depth=3, floor=0.0)
    fused = fuse_scores([a, b])
    assert [item for item, _ in fused][:2] == ["y", "x"]
    assert fused == fuse_scores([a, b])
    assert fuse_scores([ScoredList([], 10), ScoredList([("only", 1.0)], 10, floor=0.0)]) == [("only", 1.0)]
    assert fuse_scores([]) == []


def test_flat_lists_share_the_say_equally() -> None:
    flat = ScoredList([("a", 1.0), ("b", 1.0)], depth=2)
    fused = dict(fuse_scores([flat, ScoredList([("b", 2.0), ("c", 2.0)], depth=2)]))
    assert fused == {"a": 0.5, "b": 1.0, "c": 0.5}


@pytest.fixture(scope="module")
def scifact_300() -> list[Document]:
    assert SCIFACT.is_file(), f"{SCIFACT} is missing: the shared SciFact set must sit beside the checkout"
    docs = []
    with open(SCIFACT, encoding="utf-8") as corpus:
        for line in corpus:
            record = json.loads(line)
            docs.append(Document(id=record["_id"], title=record["title"], text=record["text"]))
            if len(docs) == 300:
                break
    return docs


def test_a_unique_exact_match_ranks_first_over_weak_vectors(tmp_path: Path, scifact_300: list[Document]) -> None:
    """The case from the field: BM25 scores the edited abstract far ahead; random vectors must not outvote it."""
    edited = 137
    docs = list(scifact_300)
    docs[edited] = Document(id=docs[edited].id, title=docs[edited].title, text=f"{docs[edited].text} {EXACT}")
    embedder = HashEmbedder(dims=32, limit=256)  # vectors that know nothing about meaning
    Indexer(tmp_path / "idx", embedder=embedder).add_documents(docs)

    async def search(query: str, mode: str) -> list[str]:
        with IndexDirectory(tmp_path / "idx").open_current() as snapshot:
            hits = await Retriever(snapshot, embedder).search(query, 10, mode)  # type: ignore[arg-type]
            return [hit.chunk.doc_id for hit in hits]

    for query in ("zebra migration quasar luminosity", "quasar luminosity", "Zebra  migration patterns"):
        lexical = asyncio.run(search(query, "lexical"))
        hybrid = asyncio.run(search(query, "hybrid"))
        assert lexical[0] == docs[edited].id, query
        assert hybrid[0] == docs[edited].id, (query, hybrid[:3])
