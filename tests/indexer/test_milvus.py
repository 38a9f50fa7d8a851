"""The Milvus dense backend against a real Milvus Lite: same answers as FAISS, collections follow snapshots."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from indexer import Indexer
from indexer.errors import ConfigError
from indexer.store import IndexDirectory
from indexer.store.backends import DenseTarget, collection_name
from indexer.store.backends import load_milvus
from indexer.store.milvus import list_collections, write_collection
from service import RagService, Settings

from ..conftest import ROOT, SAMPLE_DOCS, HashEmbedder, write_corpus
from .test_store import make_corpus, publish, snapshot_dirs, unit_vectors

MILVUS = DenseTarget("milvus")


def lite_collections(root: Path) -> list[str]:
    return sorted(list_collections(str(root / "milvus.db"), "iorag_"))


@pytest.fixture
def corpus() -> tuple[Any, Any, np.ndarray]:
    documents, chunks = make_corpus(20, 5)
    return documents, chunks, unit_vectors(len(chunks), 24, seed=7)


def test_search_and_vectors_match_faiss_after_reopening(tmp_path: Path, corpus: Any) -> None:
    documents, chunks, vectors = corpus
    faiss_dir, milvus_dir = IndexDirectory(tmp_path / "faiss"), IndexDirectory(tmp_path / "milvus")
    publish(faiss_dir, documents, chunks, vectors)
    manifest = publish(milvus_dir, documents, chunks, vectors, dense=MILVUS)
    # The manifest names the backend and a URI relative to the index dir; no dense.faiss is written.
    data = json.loads((milvus_dir.snapshots_dir / manifest.snapshot / "manifest.json").read_text())
    assert data["dense"] == {"backend": "milvus", "uri": "milvus.db", "collection": collection_name(manifest.snapshot)}
    assert not (milvus_dir.snapshots_dir / manifest.snapshot / "dense.faiss").exists()
    queries = unit_vectors(9, 24, seed=8)
    with faiss_dir.open_current() as f, IndexDirectory(tmp_path / "milvus").open_current() as m:
        assert m.manifest == manifest
        for k in (1, 10, 200):
            expected, got = f.search(queries, k), m.search(queries, k)
            assert [[h.chunk.chunk_id for h in row] for row in got] == [[h.chunk.chunk_id for h in row] for row in expected]
            for got_row, expected_row in zip(got, expected):
                np.testing.assert_allclose([h.score for h in got_row], [h.score for h in expected_row], atol=1e-5)
        ids = [c.chunk_id for c in reversed(chunks)]
        np.testing.assert_array_equal(m.vectors_for(ids), f.vectors_for(ids))
        assert m.vectors_for([]).shape == (0, 24)


def test_gc_drops_collections_of_collected_and_unfinished_snapshots(tmp_path: Path, corpus: Any) -> None:
    documents, chunks, vectors = corpus
    directory = IndexDirectory(tmp_path)
    first = publish(directory, documents, chunks, vectors, dense=MILVUS)
    second = publish(directory, documents[:3], chunks[:15], vectors[:15], dense=MILVUS)
    assert lite_collections(tmp_path) == sorted(collection_name(m.snapshot) for m in (first, second))
    # An orphan: a collection whose snapshot directory is gone (a crash, or deleted by hand).
    write_collection(str(tmp_path / "milvus.db"), collection_name("00000000000000000001-deadbeef"), vectors[:2], 24)
    third = publish(directory, documents[:2], chunks[:10], vectors[:10], dense=MILVUS)
    assert snapshot_dirs(tmp_path) == [second.snapshot, third.snapshot]
    assert lite_collections(tmp_path) == sorted(collection_name(m.snapshot) for m in (second, third))
    # Switching back to FAISS: the Milvus snapshots go as they are collected.
    publish(directory, documents, chunks, vectors)
    fourth = publish(directory, documents, chunks, vectors)
    assert snapshot_dirs(tmp_path)[-1] == fourth.snapshot
    assert lite_collections(tmp_path) == []


def test_bad_backend_and_uri_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown vector backend"):
        Indexer(tmp_path, dense_backend="annoy")
    with pytest.raises(ConfigError, match="neither a server URI nor a Milvus Lite file"):
        Indexer(tmp_path, dense_backend="milvus", milvus_uri="somewhere/vectors")
    with pytest.raises(ValueError, match="vector_backend"):
        Settings(vector_backend="annoy")


def test_missing_extra_names_it(tmp_path: Path, corpus: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    documents, chunks, vectors = corpus
    monkeypatch.setitem(sys.modules, "indexer.store.milvus", None)  # as if pymilvus were not installed
    with pytest.raises(ConfigError) as caught:
        load_milvus()
    assert "iorag[milvus]" in caught.value.user_message()
    with pytest.raises(ConfigError):
        publish(IndexDirectory(tmp_path), documents, chunks, vectors, dense=MILVUS)
    assert not (tmp_path / "CURRENT").exists()


def test_indexer_and_rag_service_on_milvus_answer_like_faiss(tmp_path: Path) -> None:
    corpus = write_corpus(tmp_path / "corpus", SAMPLE_DOCS)
    Indexer(tmp_path / "faiss", embedder=HashEmbedder()).index([corpus])
    Indexer(tmp_path / "milvus", embedder=HashEmbedder(), dense_backend="milvus").index([corpus])
    assert lite_collections(tmp_path / "milvus")
    results = {}
    for name, backend in (("faiss", "faiss"), ("milvus", "milvus")):
        # vector_backend only steers writes; reading follows the manifest.
        settings = Settings(index_dir=tmp_path / name, vector_backend=backend)
        with RagService(settings, embedder=HashEmbedder()) as rag:
            results[name] = {
                mode: [(h.chunk.chunk_id, h.score) for h in rag.search(q, top_k=5, mode=mode)]
                for mode in ("dense", "hybrid")
                for q in ("cats eat fish", "moons of Mars")
            }
            # Writes through the service go to Milvus too, and searches see them.
            rag.add_documents([_tea()])
            assert rag.search("green tea steeped", top_k=1, mode="lexical")[0].chunk.doc_id == "tea"
    for mode in results["faiss"]:
        assert [c for c, _ in results["milvus"][mode]] == [c for c, _ in results["faiss"][mode]]
        np.testing.assert_allclose([s for _, s in results["milvus"][mode]], [s for _, s in results["faiss"][mode]],
                                   atol=1e-5)
    with IndexDirectory(tmp_path / "milvus").open_current() as snap:
        assert snap.manifest.dense["backend"] == "milvus"


def _tea() -> Any:
    from indexer import Document

    return Document(id="tea", text="Green tea is steeped at 80 degrees for two minutes.")


def test_cli_index_with_milvus_then_search(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("IORAG_", "IOINTELLIGENCE_"))}

    def iorag(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "service", *args], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=120)

    indexed = iorag("index", str(ROOT / "corpora"), "--vector-backend", "milvus")
    assert indexed.returncode == 0, indexed.stderr
    assert (tmp_path / ".iorag" / "milvus.db").exists()
    found = iorag("search", "How are quotas refreshed?", "--mode", "dense", "-k", "3", "--json")
    assert found.returncode == 0, found.stderr
    assert len(json.loads(found.stdout)["results"]) == 3


def test_a_write_without_a_backend_choice_keeps_the_index_on_milvus(tmp_path: Path) -> None:
    from indexer.models import Document

    index_dir = tmp_path / "idx"
    Indexer(index_dir, embedder=HashEmbedder(), dense_backend="milvus").add_documents(
        [Document(id="a", text="Alpha text.")]
    )
    # A later writer that was not told a backend (the HTTP service by default) stays on Milvus.
    Indexer(index_dir, embedder=HashEmbedder()).add_documents([Document(id="b", text="Beta text.")])
    with IndexDirectory(index_dir).open_current() as snapshot:
        assert snapshot.manifest.dense["backend"] == "milvus"
        assert snapshot.manifest.documents == 2
