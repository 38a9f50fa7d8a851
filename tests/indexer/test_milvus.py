"""The Milvus dense backend, for real: every store test runs on Milvus Lite and on a Milvus server process.

The server is `tests/milvus_server.py` (the PyPI package `milvus`, 2.3.x), started once per
session with authentication on; `milvus` (the fixture) is parametrized over both kinds.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import httpx
import numpy as np
import pytest

from indexer import Document, Indexer
from indexer.errors import ConfigError, StoreError
from indexer.store import IndexDirectory
from indexer.store.backends import DenseTarget, collection_name, load_milvus
from indexer.store.dense.milvus import HNSW, drop_collection, write_collection
from service import RagService, Settings

from ..conftest import SAMPLE_DOCS, HashEmbedder, write_corpus
from .conftest import MilvusSetup
from .test_store import make_corpus, publish, snapshot_dirs, unit_vectors
from tests.milvus_server import MilvusServerProcess


@pytest.fixture
def corpus() -> tuple[Any, Any, np.ndarray]:
    documents, chunks = make_corpus(20, 5)
    return documents, chunks, unit_vectors(len(chunks), 24, seed=7)


def _index_spec(milvus: MilvusSetup) -> dict[str, Any]:
    return {"type": "FLAT"} if milvus.kind == "lite" else dict(HNSW)


def test_search_and_vectors_match_faiss_after_reopening(tmp_path: Path, corpus: Any, milvus: MilvusSetup) -> None:
    documents, chunks, vectors = corpus
    faiss_dir, milvus_dir = IndexDirectory(tmp_path / "faiss"), milvus.directory(tmp_path / "milvus")
    publish(faiss_dir, documents, chunks, vectors)
    manifest = publish(milvus_dir, documents, chunks, vectors, dense=milvus.target())
    # The manifest (in CURRENT) names the backend, the URI (a Lite file relative to the index
    # dir) and the index type chosen for that kind of URI; no FAISS segment is written, no
    # token is kept.
    raw = (milvus_dir.root / "CURRENT").read_text()
    assert json.loads(raw)["dense"] == {
        "backend": "milvus", "uri": milvus.uri or "milvus.db", "collection": collection_name(manifest.snapshot),
        "index": _index_spec(milvus),
    }
    if milvus.token:
        assert milvus.token.split(":")[1] not in raw
    assert not (milvus_dir.snapshots_dir / manifest.snapshot / "segments").exists()
    queries = unit_vectors(9, 24, seed=8)
    # 100 rows are below the size at which a server builds a segment's index, so both kinds
    # answer by brute force here: exactly what FAISS answers (HNSW recall is tested below).
    with faiss_dir.open_current() as f, milvus.directory(tmp_path / "milvus").open_current() as m:
        assert m.manifest == manifest
        for k in (1, 10, 200):
            expected, got = f.search(queries, k), m.search(queries, k)
            assert [[h.chunk.chunk_id for h in row] for row in got] == [[h.chunk.chunk_id for h in row] for row in expected]
            for got_row, expected_row in zip(got, expected):
                np.testing.assert_allclose([h.score for h in got_row], [h.score for h in expected_row], atol=1e-5)
        ids = [c.chunk_id for c in reversed(chunks)]
        np.testing.assert_array_equal(m.vectors_for(ids), f.vectors_for(ids))
        assert m.vectors_for([]).shape == (0, 24)


def test_gc_drops_collections_of_collected_and_unfinished_snapshots(
    tmp_path: Path, corpus: Any, milvus: MilvusSetup
) -> None:
    documents, chunks, vectors = corpus
    directory = milvus.directory(tmp_path)
    first = publish(directory, documents, chunks, vectors, dense=milvus.target())
    second = publish(directory, documents[:3], chunks[:15], vectors[:15], dense=milvus.target())
    names = {m.snapshot: collection_name(m.snapshot) for m in (first, second)}
    assert set(names.values()) <= milvus.collections(tmp_path)
    # An orphan: a collection whose snapshot directory is gone (a crash, or deleted by hand).
    orphan = collection_name(f"0000000000000000{time.time_ns() % 10_000:04d}-deadbeef")
    write_collection(milvus.connect_uri(tmp_path), orphan, vectors[:0], 24, token=milvus.token)
    third = publish(directory, documents[:2], chunks[:10], vectors[:10], dense=milvus.target())
    assert snapshot_dirs(tmp_path) == [second.snapshot, third.snapshot]
    present = milvus.collections(tmp_path)
    assert collection_name(first.snapshot) not in present
    assert {collection_name(second.snapshot), collection_name(third.snapshot)} <= present
    if milvus.kind == "lite":
        # A Lite file inside the index belongs to it alone: its orphans are swept.
        assert present == {collection_name(second.snapshot), collection_name(third.snapshot)}
    else:
        # A server may hold other indexes' collections: only this index's snapshots' are dropped.
        assert orphan in present
        drop_collection(milvus.connect_uri(tmp_path), orphan, milvus.token)
    # Switching back to FAISS: the Milvus snapshots go as they are collected.
    publish(directory, documents, chunks, vectors)
    fourth = publish(directory, documents, chunks, vectors)
    assert snapshot_dirs(tmp_path)[-1] == fourth.snapshot
    assert not {collection_name(m.snapshot) for m in (first, second, third)} & milvus.collections(tmp_path)


def test_deleting_an_index_drops_its_collections_outside_it(tmp_path: Path, corpus: Any, milvus: MilvusSetup) -> None:
    documents, chunks, vectors = corpus
    directory = milvus.directory(tmp_path / "index")
    first = publish(directory, documents, chunks, vectors, dense=milvus.target())
    second = publish(directory, documents[:3], chunks[:15], vectors[:15], dense=milvus.target())
    mine = {collection_name(m.snapshot) for m in (first, second)}
    assert mine <= milvus.collections(tmp_path / "index")
    assert directory.drop_external_storage() == []
    if milvus.kind == "lite":
        # The Lite file inside the index goes with the directory: nothing to do outside it.
        assert mine <= milvus.collections(tmp_path / "index")
    else:
        assert not mine & milvus.collections(tmp_path / "index")


def test_bad_backend_and_uri_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown vector backend"):
        Indexer(tmp_path, dense_backend="annoy")
    with pytest.raises(ConfigError, match="neither a server URI nor a Milvus Lite file"):
        Indexer(tmp_path, dense_backend="milvus", milvus_uri="somewhere/vectors")
    with pytest.raises(ValueError, match="vector_backend"):
        Settings(vector_backend="annoy")
    # Credentials in the URI would end up in every manifest: refused, and not echoed.
    with pytest.raises(ConfigError) as caught:
        Indexer(tmp_path, dense_backend="milvus", milvus_uri="http://root:s3cret@127.0.0.1:19530")
    assert "IORAG_MILVUS_TOKEN" in caught.value.user_message()
    assert "s3cret" not in caught.value.user_message()


def test_the_token_is_a_secret_setting() -> None:
    settings = Settings(milvus_token="root:s3cret")
    assert settings.milvus_secret() == "root:s3cret"
    assert "s3cret" not in repr(settings) and "s3cret" not in str(settings.model_dump())
    assert Settings(milvus_token=" ").milvus_secret() is None


def test_missing_extra_names_it(tmp_path: Path, corpus: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    documents, chunks, vectors = corpus
    monkeypatch.setitem(sys.modules, "indexer.store.dense.milvus", None)  # as if pymilvus were not installed
    with pytest.raises(ConfigError) as caught:
        load_milvus()
    assert "iorag[milvus]" in caught.value.user_message()
    with pytest.raises(ConfigError):
        publish(IndexDirectory(tmp_path), documents, chunks, vectors, dense=DenseTarget("milvus"))
    assert not (tmp_path / "CURRENT").exists()


def test_indexer_and_rag_service_on_milvus_answer_like_faiss(tmp_path: Path, milvus: MilvusSetup) -> None:
    corpus = write_corpus(tmp_path / "corpus", SAMPLE_DOCS)
    Indexer(tmp_path / "faiss", embedder=HashEmbedder()).index([corpus])
    Indexer(tmp_path / "milvus", embedder=HashEmbedder(), dense_backend="milvus", milvus_uri=milvus.uri,
            milvus_token=milvus.token).index([corpus])
    results = {}
    for name, backend in (("faiss", "faiss"), ("milvus", "milvus")):
        # vector_backend only steers writes; reading follows the manifest.
        settings = Settings(index_dir=tmp_path / name, vector_backend=backend, milvus_uri=milvus.uri,
                            milvus_token=milvus.token)
        with RagService(settings, embedder=HashEmbedder()) as rag:
            results[name] = {
                mode: [(h.chunk.chunk_id, h.score) for h in rag.search(q, top_k=5, mode=mode)]
                for mode in ("dense", "hybrid")
                for q in ("cats eat fish", "moons of Mars")
            }
            # Writes through the service go to Milvus too, and searches see them.
            rag.add_documents([Document(id="tea", text="Green tea is steeped at 80 degrees for two minutes.")])
            assert rag.search("green tea steeped", top_k=1, mode="lexical")[0].chunk.doc_id == "tea"
            # The hash embedder is not semantic: ask for every chunk, and the new one must be among them.
            assert "tea" in {h.chunk.doc_id for h in rag.search("green tea steeped", top_k=100, mode="dense")}
    for mode in results["faiss"]:
        assert [c for c, _ in results["milvus"][mode]] == [c for c, _ in results["faiss"][mode]]
        np.testing.assert_allclose([s for _, s in results["milvus"][mode]], [s for _, s in results["faiss"][mode]],
                                   atol=1e-5)
    with milvus.directory(tmp_path / "milvus").open_current() as snap:
        assert snap.manifest.dense["backend"] == "milvus"
        assert collection_name(snap.manifest.snapshot) in milvus.collections(tmp_path / "milvus")


def _cli_env(milvus: MilvusSetup | None = None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("IORAG_", "IOINTELLIGENCE_"))}
    env.update(milvus.env() if milvus else {}, **extra)
    return env


def _iorag(cwd: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "service", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=180)


def test_cli_index_with_milvus_then_search(tmp_path: Path, milvus: MilvusSetup) -> None:
    env = _cli_env(milvus)
    corpus = write_corpus(tmp_path / "corpus", SAMPLE_DOCS)
    indexed = _iorag(tmp_path, env, "index", str(corpus), "--vector-backend", "milvus")
    assert indexed.returncode == 0, indexed.stderr
    assert (tmp_path / ".iorag" / "milvus.db").exists() == (milvus.kind == "lite")
    found = _iorag(tmp_path, env, "search", "What do cats eat?", "--mode", "dense", "-k", "3", "--json")
    assert found.returncode == 0, found.stderr
    assert len(json.loads(found.stdout)["results"]) == 3


def test_a_write_without_a_backend_choice_keeps_the_index_on_milvus(tmp_path: Path, milvus: MilvusSetup) -> None:
    index_dir = tmp_path / "idx"
    Indexer(index_dir, embedder=HashEmbedder(), dense_backend="milvus", milvus_uri=milvus.uri,
            milvus_token=milvus.token).add_documents([Document(id="a", text="Alpha text.")])
    # A later writer that was not told a backend (the HTTP service by default) stays on Milvus, same URI.
    Indexer(index_dir, embedder=HashEmbedder(), milvus_token=milvus.token).add_documents(
        [Document(id="b", text="Beta text.")]
    )
    with milvus.directory(index_dir).open_current() as snapshot:
        assert snapshot.manifest.dense["backend"] == "milvus"
        assert snapshot.manifest.dense["uri"] == (milvus.uri or "milvus.db")
        assert snapshot.manifest.documents == 2


# -- the server only ---------------------------------------------------------------


def clustered(n: int, dims: int, centers: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors from a Gaussian mixture, and queries drawn from the same mixture."""
    rng = np.random.default_rng(seed)
    means = rng.standard_normal((centers, dims)).astype(np.float32)

    def draw(count: int) -> np.ndarray:
        points = means[rng.integers(0, centers, count)] + 0.35 * rng.standard_normal((count, dims)).astype(np.float32)
        return points / np.linalg.norm(points, axis=1, keepdims=True)

    return draw(n), draw(200)


def _loaded_segments(server: MilvusServerProcess, collection: str) -> list[dict[str, Any]]:
    """The server's loaded segments of a collection (pymilvus 3 has this on MilvusClient, 2.6 in its ORM)."""
    from pymilvus import MilvusClient

    client = MilvusClient(server.uri, token=server.token)
    try:
        if hasattr(client, "list_loaded_segments"):
            return [{"index_name": s.index_name, "rows": s.num_rows} for s in client.list_loaded_segments(collection)]
        import warnings

        from pymilvus import connections, utility

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            connections.connect("segments", uri=server.uri, token=server.token)
            try:
                infos = utility.get_query_segment_info(collection, using="segments")
            finally:
                connections.disconnect("segments")
        return [{"index_name": s.index_name, "rows": s.num_rows} for s in infos]
    finally:
        client.close()


def test_hnsw_on_the_server_has_recall_at_10_of_095_against_exact(
    tmp_path: Path, milvus_server: MilvusServerProcess
) -> None:
    from pymilvus import MilvusClient

    vectors, queries = clustered(20_000, 64, centers=40, seed=3)
    documents, chunks = make_corpus(2_000, 10)
    directory = IndexDirectory(tmp_path, milvus_token=milvus_server.token)
    manifest = publish(directory, documents, chunks, vectors, dense=DenseTarget("milvus", milvus_server.uri))
    assert manifest.dense["index"] == dict(HNSW)
    # The publish waited for the index: HNSW, built over every row (not a brute-force scan).
    client = MilvusClient(milvus_server.uri, token=milvus_server.token)
    try:
        info = client.describe_index(manifest.dense["collection"], "vector")
    finally:
        client.close()
    assert info["index_type"] == "HNSW" and int(info["M"]) == HNSW["M"]
    assert int(info["indexed_rows"]) == 20_000 and int(info["pending_index_rows"]) == 0
    # ... and the server searches it through that index, not by a scan of the raw rows.
    assert {s["index_name"] for s in _loaded_segments(milvus_server, manifest.dense["collection"])} == {"vector"}
    exact = [[chunks[i].chunk_id for i in row] for row in np.argsort(-(queries @ vectors.T), axis=1)[:, :10]]
    with directory.open_current() as snapshot:
        found = [[hit.chunk.chunk_id for hit in row] for row in snapshot.search(queries, 10)]
    recall = np.mean([len(set(got) & set(want)) / 10 for got, want in zip(found, exact)])
    assert recall >= 0.95, recall


def test_a_missing_or_wrong_token_is_one_clear_line(tmp_path: Path, milvus_server: MilvusServerProcess) -> None:
    password = milvus_server.token.split(":", 1)[1]
    for token in (None, "root:not-the-password"):
        with pytest.raises(StoreError) as caught:
            Indexer(tmp_path / "idx", embedder=HashEmbedder(), dense_backend="milvus", milvus_uri=milvus_server.uri,
                    milvus_token=token).add_documents([Document(id="a", text="Alpha text.")])
        message = caught.value.user_message()
        assert milvus_server.uri in message and "IORAG_MILVUS_TOKEN" in message
        assert "not-the-password" not in message
        assert not (tmp_path / "idx" / "CURRENT").exists()
    env = _cli_env(MilvusSetup("server", milvus_server.uri, "root:not-the-password"))
    corpus = write_corpus(tmp_path / "corpus", SAMPLE_DOCS)
    failed = _iorag(tmp_path, env, "index", str(corpus), "--vector-backend", "milvus")
    assert failed.returncode == 1
    assert len(failed.stderr.strip().splitlines()) <= 2, failed.stderr  # the error and its hint, no traceback
    assert "not-the-password" not in failed.stderr + failed.stdout and password not in failed.stderr


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def served(tmp_path: Path, milvus_server: MilvusServerProcess) -> Iterator[tuple[str, MilvusSetup, Path]]:
    """`iorag serve` (real uvicorn, its own process) on an index whose vectors are on the server."""
    setup = MilvusSetup("server", milvus_server.uri, milvus_server.token)
    env = _cli_env(setup, IORAG_RELOAD_INTERVAL="0.2")
    corpus = write_corpus(tmp_path / "corpus", SAMPLE_DOCS)
    first = _iorag(tmp_path, env, "index", str(corpus), "--vector-backend", "milvus")
    assert first.returncode == 0, first.stderr
    port = _free_port()
    log = open(tmp_path / "serve.log", "w+")
    proc = subprocess.Popen([sys.executable, "-m", "service", "serve", "--port", str(port)], cwd=tmp_path, env=env,
                            stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/v1/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "serve.log").read_text()
            time.sleep(0.2)
        yield url, setup, corpus
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.seek(0)
        served_log = log.read()
        log.close()
        # The token never reaches the server's log.
        assert milvus_server.token.split(":", 1)[1] not in served_log


def test_serve_and_index_run_at_once_on_a_server(tmp_path: Path, served: tuple[str, MilvusSetup, Path]) -> None:
    url, setup, corpus = served
    answers: list[tuple[int, list[str]]] = []
    stop = threading.Event()

    def search_all_along() -> None:
        with httpx.Client(base_url=url, timeout=30) as client:
            while not stop.is_set():
                reply = client.post("/v1/search", json={"query": "green tea steeped", "top_k": 3, "mode": "dense"})
                docs = [hit["doc_id"] for hit in reply.json().get("results", [])] if reply.status_code == 200 else []
                answers.append((reply.status_code, docs))

    searcher = threading.Thread(target=search_all_along)
    searcher.start()
    try:
        (corpus / "tea.md").write_text("# Tea\n\nGreen tea is steeped at 80 degrees for two minutes.\n")
        during = len(answers)
        second = _iorag(tmp_path, _cli_env(setup), "index", str(corpus))
        assert second.returncode == 0, second.stderr
        assert "locked" not in second.stderr
        published = len(answers)
        # The server picks up the new snapshot without a restart.
        deadline = time.monotonic() + 30
        while not any("corpus/tea.md" in docs for _, docs in answers[published:]):
            assert time.monotonic() < deadline, answers[-3:]
            time.sleep(0.1)
    finally:
        stop.set()
        searcher.join()
    assert answers and all(status == 200 for status, _ in answers), {s for s, _ in answers}
    assert published > during  # searches were answered while `iorag index` ran
    assert not any("corpus/tea.md" in docs for _, docs in answers[:during])
    health = httpx.get(f"{url}/v1/health").json()
    assert health["documents"] == len(SAMPLE_DOCS) + 1
    with setup.directory(tmp_path / ".iorag").open_current() as snapshot:
        assert snapshot.manifest.dense["uri"] == setup.uri and snapshot.manifest.dense["index"]["type"] == "HNSW"
