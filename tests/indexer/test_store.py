"""Tests for the on-disk index: snapshots, embedding cache, locking, crash atomicity (real FAISS and SQLite)."""

from __future__ import annotations

import importlib.util
import json
import os
import random
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from indexer.errors import (
    CorruptIndexError,
    DimensionMismatchError,
    IndexLockedError,
    IndexNotFoundError,
    StoreError,
)
from indexer.models import Chunk
from indexer.store import DocumentRecord, EmbeddingCache, IndexDirectory, Manifest
from indexer.store import writer as store_writer
from indexer.store.dense.faiss import FaissBackend

PROJECT = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("store_crash_worker.py")
MODEL = "test/embedder"


def unit_vectors(n: int, dims: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    v = rng.standard_normal((n, dims)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def make_corpus(n_docs: int, per_doc: int) -> tuple[list[DocumentRecord], list[Chunk]]:
    documents, chunks = [], []
    for d in range(n_docs):
        ids = []
        for o in range(per_doc):
            text = f"document {d} passage {o}"
            start = 10 * o
            headings = ("H1", f"H{o}")
            chunks.append(Chunk(f"c{d}-{o}", f"d{d}", o, text, start, start + len(text), 5, f"Title {d}", headings))
            ids.append(f"c{d}-{o}")
        meta = {"n": d, "tags": ["a", "b"], "nested": {"x": 1.5}}
        text = " ".join(c.text for c in chunks[-per_doc:])
        documents.append(DocumentRecord(f"d{d}", f"src/{d}.md", f"hash{d}", f"Title {d}", meta, tuple(ids), text))
    return documents, chunks


def publish(directory: IndexDirectory, documents: Any, chunks: Any, vectors: np.ndarray, **kw: Any) -> Manifest:
    with directory.writer() as writer:
        return writer.publish(
            embedding_model=kw.pop("model", MODEL), dims=vectors.shape[1],
            documents=documents, chunks=chunks, vectors=vectors, **kw
        )


def snapshot_dirs(root: Path) -> list[str]:
    return sorted(p.name for p in (root / "snapshots").iterdir())


@pytest.fixture
def corpus() -> tuple[list[DocumentRecord], list[Chunk], np.ndarray]:
    documents, chunks = make_corpus(6, 4)
    return documents, chunks, unit_vectors(len(chunks), 16)


# -- round trip --------------------------------------------------------------------------


def test_round_trip_through_a_new_directory_object(tmp_path: Path, corpus: Any) -> None:
    documents, chunks, vectors = corpus
    manifest = publish(IndexDirectory(tmp_path / "idx"), documents, chunks, vectors, extra={"chunk_tokens": 256})

    directory = IndexDirectory(tmp_path / "idx")
    assert directory.exists() and directory.current_id() == manifest.snapshot
    with directory.open_current() as snap:
        assert snap.manifest == manifest
        assert (snap.manifest.dims, snap.manifest.documents, snap.manifest.chunks) == (16, 6, 24)
        assert snap.manifest.extra == {"chunk_tokens": 256}
        assert snap.documents() == {d.doc_id: d for d in documents}
        assert list(snap.documents()) == [d.doc_id for d in documents]
        assert snap.chunks() == chunks
        assert snap.get_chunks(["c3-1", "c0-0", "c3-1"]) == [chunks[13], chunks[0], chunks[13]]
        np.testing.assert_array_equal(snap.vectors_for([c.chunk_id for c in chunks]), vectors)

        results = snap.search(vectors[[5, 17]], k=4)
        assert [row[0].chunk for row in results] == [chunks[5], chunks[17]]
        for row, query in zip(results, vectors[[5, 17]]):
            scores = [hit.score for hit in row]
            assert scores == sorted(scores, reverse=True) and len(row) == 4
            expected = sorted(vectors @ query, reverse=True)[:4]
            np.testing.assert_allclose(scores, expected, rtol=1e-5)
        assert results[0][0].score == pytest.approx(1.0, abs=1e-5)

        everything = snap.search(vectors[0], k=1000)  # one vector, k beyond the count
        assert len(everything) == 1 and len(everything[0]) == 24
        assert {hit.chunk.chunk_id for hit in everything[0]} == {c.chunk_id for c in chunks}
        assert snap.search(vectors[:2], k=0) == [[], []]
        with pytest.raises(StoreError, match="'nope'"):
            snap.get_chunks(["c0-0", "nope"])


def test_chunks_are_stored_in_document_then_ordinal_order(tmp_path: Path, corpus: Any) -> None:
    documents, chunks, vectors = corpus
    order = np.random.default_rng(3).permutation(len(chunks))
    publish(IndexDirectory(tmp_path), documents, [chunks[i] for i in order], vectors[order])
    with IndexDirectory(tmp_path).open_current() as snap:
        assert snap.chunks() == chunks
        # Each vector followed its chunk through the reordering.
        np.testing.assert_array_equal(snap.vectors_for([c.chunk_id for c in chunks]), vectors)
        assert snap.search(vectors[7], k=1)[0][0].chunk == chunks[7]


def test_empty_index_publishes_and_searches(tmp_path: Path) -> None:
    publish(IndexDirectory(tmp_path), [], [], np.zeros((0, 8), dtype=np.float32))
    with IndexDirectory(tmp_path).open_current() as snap:
        assert snap.chunks() == [] and snap.documents() == {}
        assert snap.search(unit_vectors(2, 8), k=5) == [[], []]
        assert snap.vectors_for([]).shape == (0, 8)


def test_numpy_scalars_and_float64_vectors_are_accepted(tmp_path: Path, corpus: Any) -> None:
    documents, chunks, vectors = corpus
    with IndexDirectory(tmp_path).writer() as writer:
        manifest = writer.publish(embedding_model=MODEL, dims=np.int64(16), documents=documents, chunks=chunks,
                                  vectors=vectors.astype(np.float64))
    assert type(manifest.dims) is int
    with IndexDirectory(tmp_path).open_current() as snap:
        assert snap.manifest == manifest
        assert snap.search(vectors[2].astype(np.float64), k=np.int64(1))[0][0].chunk == chunks[2]


def test_concurrent_searches_from_threads(tmp_path: Path) -> None:
    documents, chunks = make_corpus(50, 10)
    vectors = unit_vectors(len(chunks), 32)
    publish(IndexDirectory(tmp_path), documents, chunks, vectors)
    queries = unit_vectors(64, 32, seed=9)
    with IndexDirectory(tmp_path).open_current() as snap:
        expected = [snap.search(q, k=10)[0] for q in queries]
        with ThreadPoolExecutor(max_workers=8) as pool:
            got = list(pool.map(lambda q: snap.search(q, k=10)[0], queries))
    assert got == expected


def test_publishing_10k_chunks_of_384_dims_is_fast(tmp_path: Path) -> None:
    documents, chunks = make_corpus(1000, 10)
    vectors = unit_vectors(len(chunks), 384)
    with IndexDirectory(tmp_path).writer() as writer:
        started = time.perf_counter()
        writer.publish(embedding_model=MODEL, dims=384, documents=documents, chunks=chunks, vectors=vectors)
        elapsed = time.perf_counter() - started
    assert elapsed < 2.0, f"publish took {elapsed:.2f}s"
    with IndexDirectory(tmp_path).open_current() as snap:
        assert snap.manifest.chunks == 10_000
        assert snap.search(vectors[9_999], k=1)[0][0].chunk == chunks[9_999]


# -- validation and dimensions -----------------------------------------------------------


def test_publish_rejects_inconsistent_input(tmp_path: Path, corpus: Any) -> None:
    documents, chunks, vectors = corpus
    with IndexDirectory(tmp_path).writer() as writer:

        def attempt(**kw: Any) -> None:
            args = {"documents": documents, "chunks": chunks, "vectors": vectors}
            writer.publish(**{"embedding_model": MODEL, "dims": 16, **args, **kw})

        with pytest.raises(DimensionMismatchError):
            attempt(dims=32)
        with pytest.raises(DimensionMismatchError):
            attempt(vectors=vectors[:, :8])
        with pytest.raises(StoreError, match="23 vectors for 24 chunks"):
            attempt(vectors=vectors[:23])
        with pytest.raises(StoreError, match="'c0-0' appears twice"):
            attempt(chunks=[*chunks[:-1], chunks[0]])
        with pytest.raises(StoreError, match="'d5', which is not published"):
            attempt(documents=documents[:5], chunks=chunks, vectors=vectors)
        with pytest.raises(StoreError, match="document 'd0' lists chunk ids"):
            broken = DocumentRecord("d0", "s", "h", "t", {}, ("c0-0",))
            attempt(documents=[broken, *documents[1:]])
        with pytest.raises(StoreError, match="NaN"):
            attempt(vectors=np.full_like(vectors, np.nan))
    assert not IndexDirectory(tmp_path).exists()


def test_publish_names_what_cannot_be_stored(tmp_path: Path, corpus: Any) -> None:
    documents, chunks, vectors = corpus
    bad_text = [*chunks[:3], Chunk("c0-3", "d0", 3, "broken \ud800 text", 0, 1, 1), *chunks[4:]]
    with IndexDirectory(tmp_path).writer() as writer:
        with pytest.raises(StoreError, match="chunk 'c0-3' is not valid Unicode"):
            writer.publish(embedding_model=MODEL, dims=16, documents=documents, chunks=bad_text, vectors=vectors)
        ids = documents[0].chunk_ids
        bad_meta = [DocumentRecord("d0", "s", "h", "t", {"when": object()}, ids), *documents[1:]]
        with pytest.raises(StoreError, match="document 'd0': metadata is not JSON-serializable"):
            writer.publish(embedding_model=MODEL, dims=16, documents=bad_meta, chunks=chunks, vectors=vectors)
        with pytest.raises(StoreError, match="extra is not JSON-serializable"):
            writer.publish(embedding_model=MODEL, dims=16, documents=documents, chunks=chunks, vectors=vectors,
                           extra={"x": {1, 2}})
        # Unpaired surrogates in metadata survive as JSON escapes.
        odd = [DocumentRecord("d0", "s", "h", "t", {"raw": "\udcff"}, ids), *documents[1:]]
        writer.publish(embedding_model=MODEL, dims=16, documents=odd, chunks=chunks, vectors=vectors)
    assert snapshot_dirs(tmp_path) == [IndexDirectory(tmp_path).current_id()]
    with IndexDirectory(tmp_path).open_current() as snap:
        assert snap.documents()["d0"].metadata == {"raw": "\udcff"}


def test_search_with_other_dims_is_a_dimension_mismatch(tmp_path: Path, corpus: Any) -> None:
    documents, chunks, vectors = corpus
    publish(IndexDirectory(tmp_path), documents, chunks, vectors)
    with IndexDirectory(tmp_path).open_current() as snap:
        with pytest.raises(DimensionMismatchError, match=r"test/embedder \(16 dims\)"):
            snap.search(unit_vectors(1, 8), k=3)


def test_a_new_model_replaces_the_old_one_when_published(tmp_path: Path, corpus: Any) -> None:
    documents, chunks, vectors = corpus
    directory = IndexDirectory(tmp_path)
    publish(directory, documents, chunks, vectors)
    with directory.open_current() as old:
        publish(directory, documents, chunks, unit_vectors(len(chunks), 24), model="other/model")
        assert old.search(vectors[0], k=1)[0][0].chunk == chunks[0]  # the old view keeps serving
    with directory.open_current() as new:
        assert (new.manifest.embedding_model, new.manifest.dims) == ("other/model", 24)
        with pytest.raises(DimensionMismatchError):
            new.search(vectors[0], k=1)


# -- corruption ----------------------------------------------------------------------------


@pytest.fixture
def published(tmp_path: Path, corpus: Any) -> Path:
    documents, chunks, vectors = corpus
    manifest = publish(IndexDirectory(tmp_path), documents, chunks, vectors)
    return tmp_path / "snapshots" / manifest.snapshot


def _same_size_garbage(path: Path) -> None:
    path.write_bytes(b"\x07garbage" * (path.stat().st_size // 8) + b"x" * (path.stat().st_size % 8))


def _segment(snapshot: Path) -> Path:
    [segment] = (snapshot / "segments").iterdir()
    return segment


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda d: (d.parent.parent / "CURRENT").write_text("{not json"), "CURRENT: unreadable"),
        (lambda d: (_segment(d) / "vectors.npy").unlink(), "unreadable vector segment"),
        (lambda d: (d / "chunks.sqlite").unlink(), "missing chunks.sqlite"),
        (lambda d: _same_size_garbage(_segment(d) / "vectors.npy"), "unreadable vector segment"),
        (lambda d: _same_size_garbage(d / "chunks.sqlite"), "chunks.sqlite: unreadable"),
        (lambda d: (_segment(d) / "vectors.npy").write_bytes(b"x" * 100), "unreadable vector segment"),
        (lambda d: os.truncate(_segment(d) / "vectors.npy", 200), "unreadable vector segment"),  # header kept
        (lambda d: _edit_current(d, dims=8), "holds 16-dim vectors but the manifest says 8"),
        (lambda d: _edit_current(d, chunks=25), "the manifest says 25"),
        (lambda d: _edit_current(d, dims="16"), "'dims' is missing or not of type int"),
        (lambda d: _edit_current(d, segments=[{"name": _segment(d).name, "rows": 99}]), "the manifest says 99"),
        (lambda d: _edit_current(d, segments=[{"name": "gone", "rows": 24}]), "unreadable vector segment"),
    ],
)
def test_damaged_snapshot_is_a_corrupt_index_error(published: Path, damage: Any, message: str) -> None:
    damage(published)
    with pytest.raises(CorruptIndexError, match=message):
        IndexDirectory(published.parent.parent).open_current()


def _edit_current(published: Path, **changes: Any) -> None:
    path = published.parent.parent / "CURRENT"
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def test_old_format_and_bad_current(published: Path) -> None:
    root = published.parent.parent
    _edit_current(published, format=1)
    for call in (IndexDirectory(root).open_current, IndexDirectory(root).current_id):
        with pytest.raises(StoreError, match="index format 1 is not readable by this version.*rebuild") as info:
            call()
        assert not isinstance(info.value, CorruptIndexError)
        assert "iorag index" in (info.value.hint or "")
    (root / "CURRENT").write_text("garbage")
    with pytest.raises(CorruptIndexError, match="CURRENT"):
        IndexDirectory(root).current_id()


def test_bad_snapshot_name_in_current(published: Path) -> None:
    root = published.parent.parent
    _edit_current(published, snapshot="../../etc")
    with pytest.raises(CorruptIndexError, match="does not name a snapshot"):
        IndexDirectory(root).open_current()


def test_publish_repairs_a_damaged_current(published: Path, corpus: Any) -> None:
    documents, chunks, vectors = corpus
    root = published.parent.parent
    (root / "CURRENT").write_text("garbage")
    manifest = publish(IndexDirectory(root), documents[:1], chunks[:4], vectors[:4])
    assert IndexDirectory(root).current_id() == manifest.snapshot
    assert snapshot_dirs(root) == sorted([published.name, manifest.snapshot])  # the newest old one is kept


def test_missing_index_creates_nothing(tmp_path: Path) -> None:
    directory = IndexDirectory(tmp_path / "none")
    assert not directory.exists() and directory.current_id() is None
    with pytest.raises(IndexNotFoundError, match="none"):
        directory.open_current()
    cache = directory.cache()
    assert cache.missing(MODEL, ["a", "b"]) == ["a", "b"]
    assert cache.get_many(MODEL, ["a"]) == {} and cache.count() == 0
    cache.close()
    assert not (tmp_path / "none").exists()


# -- embedding cache -------------------------------------------------------------------


def test_cache_put_get_missing_and_first_writer_wins(tmp_path: Path) -> None:
    vectors = unit_vectors(4, 8)
    with EmbeddingCache(tmp_path / "cache.sqlite") as cache:
        cache.put_many(MODEL, [("h0", vectors[0]), ("h1", vectors[1]), ("h0", vectors[2])])
        cache.put_many(MODEL, [("h1", vectors[3])])
        cache.put_many("other", [("h0", vectors[3])])
        got = cache.get_many(MODEL, ["h1", "h0", "zz", "h0"])
        assert set(got) == {"h0", "h1"}
        np.testing.assert_array_equal(got["h0"], vectors[0])
        np.testing.assert_array_equal(got["h1"], vectors[1])
        assert got["h0"].dtype == np.float32 and got["h0"].flags.writeable
        np.testing.assert_array_equal(cache.get_many("other", ["h0"])["h0"], vectors[3])
        assert cache.missing(MODEL, ["x", "h0", "y", "x", "h1", "z"]) == ["x", "y", "z"]
        assert (cache.count(), cache.count(MODEL), cache.count("other"), cache.count("none")) == (3, 2, 1, 0)
        assert (tmp_path / "cache.sqlite-wal").exists()  # WAL mode
        with pytest.raises(StoreError, match="1-D finite"):
            cache.put_many(MODEL, [("bad", np.array([np.nan, 1.0]))])
    with pytest.raises(StoreError, match="closed"):
        cache.count()


def test_cache_persists_across_reopen_and_handles_large_lists(tmp_path: Path) -> None:
    hashes = [f"hash-{i:05d}" for i in range(5_000)]
    vectors = unit_vectors(5_000, 16)
    with IndexDirectory(tmp_path).writer() as writer:
        writer.cache.put_many(MODEL, list(zip(hashes[::2], vectors[::2])))
    with IndexDirectory(tmp_path).cache() as cache:
        assert cache.count(MODEL) == 2_500
        assert cache.missing(MODEL, hashes) == hashes[1::2]
        got = cache.get_many(MODEL, hashes)
        assert len(got) == 2_500
        np.testing.assert_array_equal(np.stack([got[h] for h in hashes[::2]]), vectors[::2])
        cache.put_many(MODEL, list(zip(hashes, vectors)))  # half already there: ignored, not duplicated
        assert cache.count(MODEL) == 5_000 and cache.missing(MODEL, hashes) == []


def test_cache_shared_by_threads(tmp_path: Path) -> None:
    vectors = unit_vectors(400, 8)
    with EmbeddingCache(tmp_path / "c.sqlite") as cache:
        def put(start: int) -> None:
            cache.put_many(MODEL, [(f"h{i}", vectors[i]) for i in range(start, start + 100)])
        with ThreadPoolExecutor(max_workers=4) as pool:
            list(pool.map(put, [0, 100, 200, 300, 0, 150]))
        assert cache.count(MODEL) == 400


# -- locking ------------------------------------------------------------------------------


def test_second_writer_in_the_same_process_is_refused(tmp_path: Path) -> None:
    with IndexDirectory(tmp_path).writer():
        with pytest.raises(IndexLockedError, match=str(tmp_path)):
            with IndexDirectory(tmp_path).writer():
                pass
        started = time.perf_counter()
        with pytest.raises(IndexLockedError):
            with IndexDirectory(tmp_path).writer(timeout=0.2):
                pass
        assert time.perf_counter() - started >= 0.2
    with IndexDirectory(tmp_path).writer() as writer:  # released on exit
        assert writer.cache.count() == 0


def test_writer_in_another_process_blocks_until_it_dies(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys; from pathlib import Path; from indexer.store import IndexDirectory\n"
         "with IndexDirectory(Path(sys.argv[1])).writer():\n    print('locked', flush=True); sys.stdin.read()",
         str(tmp_path)],
        cwd=PROJECT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(PROJECT)},
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        with pytest.raises(IndexLockedError, match="locked by another writer"):
            with IndexDirectory(tmp_path).writer():
                pass
    finally:
        holder.kill()  # SIGKILL: the kernel drops the lock with the process
        holder.communicate()
    with IndexDirectory(tmp_path).writer(timeout=5):
        pass


def test_publish_after_the_writer_closed_is_refused(tmp_path: Path, corpus: Any) -> None:
    documents, chunks, vectors = corpus
    with IndexDirectory(tmp_path).writer() as writer:
        pass
    with pytest.raises(StoreError, match="closed"):
        writer.publish(embedding_model=MODEL, dims=16, documents=documents, chunks=chunks, vectors=vectors)


# -- atomicity and garbage collection ---------------------------------------------------


def _explode(*args: Any) -> None:
    raise RuntimeError("simulated failure")


def test_failed_build_leaves_the_old_snapshot_current(
    tmp_path: Path, corpus: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    documents, chunks, vectors = corpus
    directory = IndexDirectory(tmp_path)
    first = publish(directory, documents, chunks, vectors)
    monkeypatch.setattr(FaissBackend, "add", _explode)  # chunks.sqlite is already written by then
    with pytest.raises(RuntimeError, match="simulated"):
        publish(directory, documents[:2], chunks[:8], vectors[:8])
    assert directory.current_id() == first.snapshot
    assert snapshot_dirs(tmp_path) == [first.snapshot]  # the failed build cleaned up after itself
    with directory.open_current() as snap:
        assert snap.chunks() == chunks


def test_crash_mid_build_is_cleaned_by_the_next_publish(
    tmp_path: Path, corpus: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    documents, chunks, vectors = corpus
    directory = IndexDirectory(tmp_path)
    first = publish(directory, documents, chunks, vectors)
    # A crash: the build stops after chunks.sqlite and nothing gets to clean up.
    monkeypatch.setattr(store_writer, "remove_tree", lambda path: None)
    monkeypatch.setattr(FaissBackend, "add", _explode)
    with pytest.raises(RuntimeError):
        publish(directory, documents[:2], chunks[:8], vectors[:8])
    [tmp] = [name for name in snapshot_dirs(tmp_path) if name.startswith(".tmp-")]
    assert (tmp_path / "snapshots" / tmp / "chunks.sqlite").exists()
    assert directory.current_id() == first.snapshot
    with directory.open_current() as snap:
        assert snap.manifest == first and snap.chunks() == chunks

    monkeypatch.undo()
    second = publish(directory, documents[:2], chunks[:8], vectors[:8])
    assert snapshot_dirs(tmp_path) == sorted([first.snapshot, second.snapshot])
    with directory.open_current() as snap:
        assert snap.chunks() == chunks[:8]


def test_crash_between_rename_and_current(tmp_path: Path, corpus: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    documents, chunks, vectors = corpus
    directory = IndexDirectory(tmp_path)
    first = publish(directory, documents, chunks, vectors)
    monkeypatch.setattr(store_writer, "write_current", _explode)
    with pytest.raises(RuntimeError):
        publish(directory, documents[:1], chunks[:4], vectors[:4])
    assert len(snapshot_dirs(tmp_path)) == 2 and directory.current_id() == first.snapshot
    with directory.open_current() as snap:
        assert snap.manifest == first
    monkeypatch.undo()
    third = publish(directory, documents[:1], chunks[:4], vectors[:4])
    assert snapshot_dirs(tmp_path) == sorted([first.snapshot, third.snapshot])  # the orphan is gone


def test_gc_keeps_the_current_and_the_previous_snapshot(tmp_path: Path, corpus: Any) -> None:
    documents, chunks, vectors = corpus
    directory = IndexDirectory(tmp_path)
    ids: list[str] = []
    with directory.writer() as writer:
        for n in range(1, 5):
            ids.append(writer.publish(embedding_model=MODEL, dims=16, documents=documents[:n],
                                      chunks=chunks[: 4 * n], vectors=vectors[: 4 * n]).snapshot)
            assert snapshot_dirs(tmp_path) == sorted(ids[-2:])
            assert directory.current_id() == ids[-1]
    assert ids == sorted(ids) and len(set(ids)) == 4
    assert not list(tmp_path.glob("CURRENT.tmp-*"))
    previous = json.loads((tmp_path / "CURRENT").read_text())["previous"]
    assert previous["snapshot"] == ids[-2] and (tmp_path / "snapshots" / ids[-2] / "chunks.sqlite").is_file()


def test_open_reader_survives_garbage_collection(tmp_path: Path, corpus: Any) -> None:
    documents, chunks, vectors = corpus
    directory = IndexDirectory(tmp_path)
    publish(directory, documents, chunks, vectors)
    with directory.open_current() as reader:
        for n in (1, 2):
            publish(directory, documents[:n], chunks[: 4 * n], vectors[: 4 * n])
        assert not reader.path.exists()
        assert reader.chunks() == chunks and reader.search(vectors[3], k=1)[0][0].chunk == chunks[3]


# -- kill -9 ------------------------------------------------------------------------------


def _load_worker() -> Any:
    spec = importlib.util.spec_from_file_location("store_crash_worker", WORKER)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _check_index_after_crash(root: Path, worker: Any, last_reported: str | None) -> None:
    directory = IndexDirectory(root)
    if last_reported is None and not directory.exists():
        return  # killed before the first publish completed
    current = directory.current_id()
    assert current is not None and (last_reported is None or current >= last_reported)
    with directory.open_current() as snap:
        m = snap.manifest
        documents, chunks, vectors = worker.make_data(m.extra["seed"], m.extra["iteration"])
        assert (m.documents, m.chunks) == (len(snap.documents()), len(snap.chunks()))
        assert (m.documents, m.chunks) == (len(documents), len(chunks))
        assert snap.chunks() == chunks and list(snap.documents().values()) == documents
        np.testing.assert_array_equal(snap.vectors_for([c.chunk_id for c in chunks]), vectors)
        hits = snap.search(vectors[[0, -1]], k=3)
        assert [row[0].chunk for row in hits] == [chunks[0], chunks[-1]]
    published = [n for n in snapshot_dirs(root) if not n.startswith(".tmp-")]
    assert len(published) <= 3  # current, previous, and at most one renamed but never made current
    with directory.cache() as cache:
        assert cache.count() % worker.CACHE_BATCH == 0  # committed batches are whole


@pytest.mark.slow
def test_kill_9_at_random_moments_never_breaks_the_index(tmp_path: Path) -> None:
    worker = _load_worker()
    root = tmp_path / "idx"
    rng = random.Random(20240611)
    last_reported: str | None = None
    for _ in range(8):
        proc = subprocess.Popen(
            [sys.executable, str(WORKER), str(root), str(rng.randrange(1_000_000))],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        try:
            assert proc.stdout is not None
            ready = proc.stdout.readline()
            assert ready.strip() == "ready", proc.communicate()[1]
            time.sleep(rng.uniform(0.0, 0.5))
            os.kill(proc.pid, signal.SIGKILL)
        finally:
            proc.kill()
            out, err = proc.communicate()
        assert proc.returncode == -signal.SIGKILL, err
        for line in out.splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[0] == "published":
                last_reported = parts[1]
        _check_index_after_crash(root, worker, last_reported)
    assert last_reported is not None, "the worker never published; the kill test tested nothing"

    # The next publish clears whatever the kills left behind.
    documents, chunks, vectors = worker.make_data(0, 0)
    publish(IndexDirectory(root), documents, chunks, vectors, model=worker.MODEL)
    assert len(snapshot_dirs(root)) == 2 and not list(root.glob("CURRENT.tmp-*"))
