"""The FAISS dense backend's approximate path: how many IVF cells a query visits, and that it holds.

Real FAISS throughout; `ann_min_rows=0` forces the IVF index on a small segment.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from indexer.store.dense import faiss as dense_faiss

from .test_generations import clustered


def _recall(dense: dense_faiss.FaissDense, vectors: np.ndarray, queries: np.ndarray) -> float:
    truth = np.argsort(-(queries @ vectors.T), axis=1)[:, :10]
    _, found = dense.search(queries, 10)
    return float(np.mean([len(set(f.tolist()) & set(t.tolist())) / 10 for f, t in zip(found, truth)]))


def test_an_opened_segment_visits_the_cells_the_current_rule_asks_for_whatever_its_file_says(tmp_path: Path) -> None:
    vectors = clustered(4000, 32, clusters=30, seed=8)
    entry = dense_faiss.write_segment(tmp_path, "seg", np.arange(len(vectors)), vectors, ann_min_rows=0)
    assert entry["ann"]
    # A segment written by an older rule: its file asks for one cell per query.
    path = tmp_path / "seg" / "ann.faiss"
    stored = dense_faiss.faiss.read_index(str(path))
    stored.nprobe = 1
    dense_faiss.faiss.write_index(stored, str(path))

    dense = dense_faiss.FaissDense(tmp_path, [entry], 32, np.zeros(0, np.int64))
    ann = dense._segments[0].ann
    assert ann.nprobe == dense_faiss._probes_for(ann.nlist, len(vectors)) > 1
    rng = np.random.default_rng(9)
    queries = vectors[rng.integers(0, len(vectors), 100)] + 0.2 * rng.standard_normal((100, 32)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    assert _recall(dense, vectors, queries) >= 0.95
    ann.nprobe = 1  # what the file asked for finds far less: the rule is what made the difference
    assert _recall(dense, vectors, queries) < 0.9


@pytest.mark.parametrize("rows", [20_000, 100_000, 1_000_000, 16_000_000])
def test_the_share_of_cells_visited_shrinks_with_size_but_never_below_one_in_32(rows: int) -> None:
    lists = dense_faiss._lists_for(rows)
    probes = dense_faiss._probes_for(lists, rows)
    assert lists / 32 <= probes <= lists
    # Real MiniLM vectors needed about 64 cells up to a few hundred thousand rows (bench/ann_compare.py).
    assert probes >= 64
    smaller = dense_faiss._lists_for(rows // 10)
    assert probes / lists <= dense_faiss._probes_for(smaller, rows // 10) / smaller


def test_in_a_large_index_a_mid_sized_write_gets_an_approximate_index(tmp_path: Path) -> None:
    """A small index stays exact; once the index is large, a write of a few thousand rows is not
    scanned exactly by every query."""
    backend = dense_faiss.FaissBackend(ann_min_rows=6_000)
    vectors = np.random.default_rng(3).standard_normal((9_000, 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    entry = backend.create(tmp_path, "s", 16)
    small = backend.add(tmp_path, entry, [], "a", np.arange(3_000), vectors[:3_000])
    assert [s["ann"] for s in small] == [False]  # the whole index is under 6,000 rows: exact
    large = backend.add(tmp_path, entry, small, "b", np.arange(3_000, 6_000), vectors[3_000:6_000])
    assert [s["ann"] for s in large] == [False, True]  # 6,000 rows in all: a 3,000-row write gets IVF
    tiny = backend.add(tmp_path, entry, large, "c", np.arange(6_000, 6_100), vectors[6_000:6_100])
    assert tiny[-1]["ann"] is False  # under ANN_MIN_ROWS_IN_LARGE: scanning it costs little


def test_a_mid_sized_segment_trains_without_faiss_warning_on_stderr(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    vectors = clustered(2_048, 32, clusters=30, seed=4)  # 181 cells, 11 training points each
    entry = dense_faiss.write_segment(tmp_path, "seg", np.arange(len(vectors)), vectors, ann_min_rows=0)
    assert entry["ann"]
    assert "WARNING" not in capfd.readouterr().err
