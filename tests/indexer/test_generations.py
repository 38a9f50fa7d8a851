"""Writes in generations: tombstones, segments, approximate search, compaction, readers during writes.

Real FAISS and SQLite throughout; a low `ann_min_rows` forces the approximate (IVF) path.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from indexer import Document, Indexer
from indexer.models import Chunk
from indexer.store import DocumentRecord, IndexDirectory
from indexer.store.writer import MAX_SEGMENTS
from service import RagService, Settings

from ..conftest import HashEmbedder
from .test_store import MODEL, make_corpus, publish, unit_vectors

PROJECT = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("store_compact_worker.py")


def clustered(n: int, dims: int, clusters: int, seed: int) -> np.ndarray:
    """A Gaussian mixture on the unit sphere: what real embeddings look like to an IVF index."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((clusters, dims)).astype(np.float32)
    points = centers[rng.integers(0, clusters, n)] + 0.5 * rng.standard_normal((n, dims)).astype(np.float32)
    return points / np.linalg.norm(points, axis=1, keepdims=True)


def one_doc(i: int, vectors: np.ndarray) -> tuple[DocumentRecord, Chunk, np.ndarray]:
    text = f"item {i} word{i % 97} topic{i % 13}"
    chunk = Chunk(f"c{i}", f"d{i}", 0, text, 0, len(text), 4, f"Doc {i}")
    return DocumentRecord(f"d{i}", f"src/{i}", f"h{i}", f"Doc {i}", {}, (f"c{i}",), text), chunk, vectors[i : i + 1]


def test_an_update_writes_one_segment_and_tombstones_what_it_replaces(tmp_path: Path) -> None:
    documents, chunks = make_corpus(6, 4)
    vectors = unit_vectors(len(chunks), 16)
    first = publish(IndexDirectory(tmp_path), documents, chunks, vectors)
    directory = IndexDirectory(tmp_path)
    with directory.writer() as writer:
        second = writer.update(upserts=documents[1:2], chunks=chunks[4:8], vectors=vectors[4:8], deletes=["d0", "nope"])
    assert (second.snapshot, second.generation) == (first.snapshot, 2)  # no new snapshot: nothing copied
    assert (second.documents, second.chunks, second.dead) == (5, 20, 8)
    assert [s["rows"] for s in second.segments] == [24, 4]
    with directory.open_current() as snap:
        assert sorted(snap.documents()) == ["d1", "d2", "d3", "d4", "d5"]
        assert [c.chunk_id for c in snap.chunks(["d1"])] == ["c1-0", "c1-1", "c1-2", "c1-3"]
        hits = snap.search(vectors, 24)
        assert all(h.chunk.doc_id != "d0" for row in hits for h in row)
        assert all(len(row) == 20 for row in hits)
        np.testing.assert_array_equal(snap.vectors_for(["c1-2"]), vectors[6:7])


@pytest.mark.parametrize("ann_min_rows", [10**9, 64], ids=["exact", "approximate"])
def test_a_deleted_chunk_is_never_returned_by_any_mode(tmp_path: Path, ann_min_rows: int) -> None:
    embedder = HashEmbedder()
    indexer = Indexer(tmp_path, embedder=embedder, ann_min_rows=ann_min_rows)
    words = ["apple", "banana", "cherry", "damson", "elder", "fig", "grape", "hazel"]
    documents = [Document(id=f"doc{i}", text=f"{words[i % 8]} orchard note {i}. The {words[(i + 3) % 8]} grows.")
                 for i in range(200)]
    indexer.add_documents(documents)
    gone = {f"doc{i}" for i in range(0, 200, 3)}
    indexer.delete_documents(sorted(gone)[:30])
    indexer.delete_documents(sorted(gone)[30:])
    with IndexDirectory(tmp_path).open_current() as snap:
        approximate = any(s.get("ann") for s in snap.manifest.segments)
        assert approximate == (ann_min_rows == 64)
    with RagService(Settings(index_dir=tmp_path), embedder=embedder) as rag:
        for mode in ("dense", "lexical", "hybrid"):
            for query in (*words, *(d.text for d in documents[:12])):
                hits = rag.search(query, top_k=50, mode=mode)  # type: ignore[arg-type]
                assert hits, (mode, query)
                assert not {h.chunk.doc_id for h in hits} & gone, (mode, query)
        # The deleted documents' own texts find only live ones, even as the nearest vectors.
        for document in documents[:30:3]:
            assert all(h.chunk.doc_id not in gone for h in rag.search(document.text, top_k=5, mode="dense"))


def test_ann_recall_at_10_against_exact_search(tmp_path: Path) -> None:
    vectors = clustered(6000, 48, clusters=40, seed=3)
    documents, chunks = [], []
    for i in range(len(vectors)):
        record, chunk, _ = one_doc(i, vectors)
        documents.append(record)
        chunks.append(chunk)
    directory = IndexDirectory(tmp_path)
    with directory.writer(ann_min_rows=1000) as writer:
        writer.publish(embedding_model=MODEL, dims=48, documents=documents, chunks=chunks, vectors=vectors)
    rng = np.random.default_rng(4)
    queries = vectors[rng.integers(0, len(vectors), 200)] + 0.2 * rng.standard_normal((200, 48)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    truth = np.argsort(-(queries @ vectors.T), axis=1)[:, :10]
    with directory.open_current() as snap:
        assert snap.manifest.segments[0]["ann"], "the approximate path was not taken"
        found = snap.search(queries, 10)
    recall = np.mean([len({h.chunk.chunk_id for h in row} & {f"c{i}" for i in t}) / 10 for row, t in zip(found, truth)])
    assert recall >= 0.95, recall
    # Scores are exact inner products (candidates are rescored from the stored vectors).
    best = found[0][0]
    assert best.score == pytest.approx(float(queries[0] @ vectors[int(best.chunk.chunk_id[1:])]), abs=1e-5)


def test_segments_stay_few_and_compaction_keeps_the_content(tmp_path: Path) -> None:
    vectors = clustered(400, 16, clusters=8, seed=1)
    directory = IndexDirectory(tmp_path)
    record, chunk, v = one_doc(0, vectors)
    publish(directory, [record], [chunk], v)
    with directory.writer() as writer:
        for i in range(1, 40):
            record, chunk, v = one_doc(i, vectors)
            manifest = writer.update(upserts=[record], chunks=[chunk], vectors=v, deletes=[f"d{i - 1}"] if i % 2 else [])
            assert len(manifest.segments) <= MAX_SEGMENTS
        with directory.open_current() as before:
            expected = before.chunks()
            expected_hits = [[h.chunk.chunk_id for h in row] for row in before.search(vectors[:40], 5)]
        compacted = writer.compact()
    assert compacted is not None and compacted.dead == 0 and len(compacted.segments) == 1
    with directory.open_current() as after:
        assert after.chunks() == expected and after.manifest.documents == len(after.documents())
        assert [[h.chunk.chunk_id for h in row] for row in after.search(vectors[:40], 5)] == expected_hits
    assert len(list((tmp_path / "snapshots").iterdir())) == 2  # the new snapshot and the one it replaced


def test_merges_take_the_smallest_segments_and_keep_every_row_findable(tmp_path: Path) -> None:
    """Writes of mixed sizes: merges pick small segments wherever they sit in the list, the big
    first one is left alone, and vectors, dense and lexical hits stay what a fresh index gives."""
    vectors = clustered(1_600, 16, clusters=8, seed=4)
    directory = IndexDirectory(tmp_path)
    records, chunks = zip(*[one_doc(i, vectors)[:2] for i in range(300)])
    publish(directory, list(records), list(chunks), vectors[:300])
    rng = np.random.default_rng(4)
    at, live = 300, set(range(300))
    with directory.writer() as writer:
        for _ in range(30):
            size = int(rng.choice([1, 2, 40]))
            ids = list(range(at, at + size))
            gone = [f"d{int(i)}" for i in rng.choice(sorted(live), 2, replace=False)]
            batch = [one_doc(i, vectors) for i in ids]
            manifest = writer.update(upserts=[b[0] for b in batch], chunks=[b[1] for b in batch],
                                     vectors=vectors[at : at + size], deletes=gone)
            live = (live | set(ids)) - {int(g[1:]) for g in gone}
            at += size
            assert len(manifest.segments) <= MAX_SEGMENTS and len(manifest.lexical) <= MAX_SEGMENTS
            assert manifest.segments[0]["rows"] == 300  # the bulk of the index is never rewritten by small writes
    snapshot_dir = directory.snapshots_dir / manifest.snapshot
    for segment in manifest.segments:
        ids = np.load(snapshot_dir / "segments" / segment["name"] / "ids.npy")
        assert (np.diff(ids) > 0).all()
    wanted = sorted(live)
    with directory.open_current() as snap:
        assert np.allclose(snap.vectors_for([f"c{i}" for i in wanted]), vectors[wanted])
        assert {int(h.chunk.chunk_id[1:]) for h in snap.search(vectors[wanted[-1]], 1)[0]} == {wanted[-1]}
        lexical = {h.chunk.chunk_id for h in snap.lexical().search("topic5", 1000)}
    assert lexical == {f"c{i}" for i in wanted if i % 13 == 5}


def test_a_reader_keeps_its_generation_while_writers_go_on(tmp_path: Path) -> None:
    vectors = clustered(300, 16, clusters=6, seed=2)
    directory = IndexDirectory(tmp_path)
    records, chunks = zip(*[one_doc(i, vectors)[:2] for i in range(100)])
    publish(directory, list(records), list(chunks), vectors[:100])
    with directory.open_current() as reader:
        expected_chunks = reader.chunks()
        expected = [[h.chunk.chunk_id for h in row] for row in reader.search(vectors[:50], 10)]
        expected_lexical = [c for c, _ in reader.lexical_search("word3 topic5", 20)]
        failures: list[str] = []
        stop = threading.Event()

        def read() -> None:
            while not stop.is_set():
                got = [[h.chunk.chunk_id for h in row] for row in reader.search(vectors[:50], 10)]
                if got != expected:
                    failures.append("dense")
                if [c for c, _ in reader.lexical_search("word3 topic5", 20)] != expected_lexical:
                    failures.append("lexical")

        thread = threading.Thread(target=read)
        thread.start()
        try:
            with directory.writer() as writer:
                for i in range(100, 130):
                    record, chunk, v = one_doc(i, vectors)
                    writer.update(upserts=[record], chunks=[chunk], vectors=v, deletes=[f"d{i - 100}"])
                writer.compact()
        finally:
            stop.set()
            thread.join()
        assert not failures, failures[:3]
        assert reader.chunks() == expected_chunks
    with directory.open_current() as now:
        assert now.manifest.documents == 100 and {c.doc_id for c in now.chunks()} == {f"d{i}" for i in range(30, 130)}


def test_an_unpublished_write_is_rolled_back_by_the_next_writer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from indexer.store import writer as store_writer

    vectors = clustered(50, 16, clusters=4, seed=5)
    directory = IndexDirectory(tmp_path)
    records, chunks = zip(*[one_doc(i, vectors)[:2] for i in range(10)])
    first = publish(directory, list(records), list(chunks), vectors[:10])

    def crash(*args: Any) -> None:
        raise KeyboardInterrupt  # a crash after the rows and the segment were written

    monkeypatch.setattr(store_writer, "write_current", crash)
    record, chunk, v = one_doc(20, vectors)
    with pytest.raises(KeyboardInterrupt), directory.writer() as writer:
        writer.update(upserts=[record], chunks=[chunk], vectors=v, deletes=["d0"])
    monkeypatch.undo()
    assert directory.current_manifest() == first
    with directory.open_current() as snap:
        assert sorted(snap.documents()) == sorted(r.doc_id for r in records)
    record, chunk, v = one_doc(21, vectors)
    with directory.writer() as writer:
        manifest = writer.update(upserts=[record], chunks=[chunk], vectors=v)
    assert (manifest.documents, manifest.chunks, manifest.dead) == (11, 11, 0)
    with directory.open_current() as snap:
        assert "d20" not in snap.documents() and "d0" in snap.documents()
        assert len(snap.chunks()) == 11 and snap.search(v, 1)[0][0].chunk.chunk_id == "c21"
    names = {p.name for p in (directory.snapshots_dir / first.snapshot / "segments").iterdir()}
    assert names == {s["name"] for s in manifest.segments}  # the crashed write's segment is gone


def test_kill_9_during_writes_and_compaction_leaves_the_last_good_index(tmp_path: Path) -> None:
    root = tmp_path / "idx"
    rng = random.Random(11)
    env = {**os.environ, "PYTHONPATH": str(PROJECT)}
    compactions = 0
    for _ in range(8):
        process = subprocess.Popen([sys.executable, str(WORKER), str(root)], stdout=subprocess.PIPE, text=True, env=env)
        assert process.stdout is not None
        lines = []
        # Kill after a random number of published steps, some of them compactions.
        for _ in range(rng.randint(1, 6)):
            line = process.stdout.readline()
            if not line:
                break
            lines.append(line)
        time.sleep(rng.random() * 0.2)
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        compactions += sum(1 for line in lines if line.startswith("compacted"))
        _check_consistent(root)
    assert compactions > 0, "no compaction ran before a kill; the test tested nothing"


def _check_consistent(root: Path) -> None:
    directory = IndexDirectory(root)
    if not directory.exists():
        return
    with directory.open_current() as snap:
        m = snap.manifest
        documents, chunks = snap.documents(), snap.chunks()
        assert (m.documents, m.chunks) == (len(documents), len(chunks))
        assert {c.doc_id for c in chunks} == set(documents)
        vectors = snap.vectors_for([c.chunk_id for c in chunks])
        for chunk, row in zip(chunks[:20], snap.search(vectors[:20], 1)):
            assert row[0].chunk.chunk_id == chunk.chunk_id
        alive = set(documents)
        assert all(c.doc_id in alive for c in snap.rows([i for i, _ in snap.lexical_search("item word3", 50)]).values())
    expected = json.loads((root / "CURRENT").read_text())
    assert expected["documents"] == len(documents)


def test_a_chunk_location_is_stored_and_returned_with_hits(tmp_path: Path) -> None:
    vectors = unit_vectors(2, 16)
    chunks = [Chunk("p7", "deck", 0, "slide text", 0, 10, 3, "Deck", location={"slide": 3}),
              Chunk("p8", "deck", 1, "other text", 11, 21, 3, "Deck")]
    record = DocumentRecord("deck", "deck.pptx", "h", "Deck", {}, ("p7", "p8"), "slide text other text")
    publish(IndexDirectory(tmp_path), [record], chunks, vectors)
    with IndexDirectory(tmp_path).open_current() as snap:
        assert [c.location for c in snap.get_chunks(["p7", "p8"])] == [{"slide": 3}, None]
        assert snap.search(vectors[0], 1)[0][0].chunk.location == {"slide": 3}
        assert snap.lexical().search("slide", 1)[0].chunk.location == {"slide": 3}


def test_milvus_writes_insert_rows_and_never_return_deleted_ones(tmp_path: Path) -> None:
    from indexer.store.backends import DenseTarget

    vectors = clustered(120, 16, clusters=4, seed=8)
    directory = IndexDirectory(tmp_path)
    records, chunks = zip(*[one_doc(i, vectors)[:2] for i in range(100)])
    first = publish(directory, list(records), list(chunks), vectors[:100], dense=DenseTarget("milvus"))
    with directory.writer() as writer:
        for i in range(100, 110):
            record, chunk, v = one_doc(i, vectors)
            manifest = writer.update(upserts=[record], chunks=[chunk], vectors=v, deletes=[f"d{i - 100}"])
    # One collection all along: a write inserts its rows, nothing is copied.
    assert manifest.dense == first.dense and manifest.snapshot == first.snapshot and manifest.generation == 11
    gone = {f"d{i}" for i in range(10)}
    with directory.open_current() as snap:
        for row in snap.search(vectors[:20], 10):
            assert len(row) == 10 and not {h.chunk.doc_id for h in row} & gone
        assert snap.search(vectors[105], 1)[0][0].chunk.doc_id == "d105"
