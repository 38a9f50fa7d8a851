"""BM25 postings segments: scores equal BM25 computed by hand, across segments, merges and tombstones."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from indexer.errors import CorruptIndexError, StoreError
from indexer.lexical import BM25_B, BM25_K1
from indexer.store import postings
from indexer.store.postings import Postings, merge_segments, write_segment

WORDS = [f"w{i}" for i in range(12)]


def _bm25(rows: dict[int, list[str]], stats: dict[int, list[str]], query: list[str]) -> dict[int, float]:
    """BM25 of `rows` for `query`, with statistics over `stats` (a superset holding tombstoned rows too)."""
    n = len(stats)
    average = sum(len(t) for t in stats.values()) / n
    scores: dict[int, float] = {}
    for row, terms in rows.items():
        score = 0.0
        for term in dict.fromkeys(query):
            tf = terms.count(term)
            if not tf:
                continue
            df = sum(term in t for t in stats.values())
            idf = max(math.log((n - df + 0.5) / (df + 0.5)), 1e-6)
            score += idf * tf * (BM25_K1 + 1) / (tf + BM25_K1 * (1 - BM25_B + BM25_B * len(terms) / average))
        if score > 0:
            scores[row] = score
    return scores


def _write(root: Path, name: str, rows: dict[int, list[str]]) -> dict:
    vocabulary = sorted({t for terms in rows.values() for t in terms})
    index = {t: i for i, t in enumerate(vocabulary)}
    ids = np.array(sorted(rows), dtype=np.int64)
    entry = write_segment(root, name, ids, [[index[t] for t in rows[int(i)]] for i in ids], vocabulary)
    assert entry is not None
    return entry


def _check(found: tuple[np.ndarray, np.ndarray], expected: dict[int, float], k: int) -> None:
    ids, scores = found
    best = sorted(expected.items(), key=lambda item: (-item[1], item[0]))[:k]
    assert len(ids) == len(best)
    # Equal scores may come in either order at float32 precision: the k best scores match by rank,
    # and every row returned has its own score, so the rows are a true top k.
    assert np.allclose(scores, [s for _, s in best], rtol=1e-5)
    for row, score in zip(ids, scores):
        assert math.isclose(float(score), expected[int(row)], rel_tol=1e-5)


corpora = st.lists(st.lists(st.sampled_from(WORDS), min_size=0, max_size=12), min_size=1, max_size=40)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(texts=corpora, cuts=st.lists(st.integers(0, 40), max_size=3), dead_picks=st.lists(st.integers(0, 39), max_size=10),
       query=st.lists(st.sampled_from(WORDS + ["absent"]), min_size=1, max_size=4), k=st.integers(1, 12))
def test_scores_are_bm25_across_segments_tombstones_and_merges(
    tmp_path_factory: pytest.TempPathFactory, texts: list[list[str]], cuts: list[int], dead_picks: list[int],
    query: list[str], k: int,
) -> None:
    root = tmp_path_factory.mktemp("lexical")
    rows = {10 + 3 * i: terms for i, terms in enumerate(texts)}  # row ids with gaps, as after deletions
    ordered = sorted(rows)
    edges = sorted({0, len(ordered), *(c for c in cuts if c < len(ordered))})
    entries = [_write(root, f"s{n}", {r: rows[r] for r in ordered[a:b]}) for n, (a, b) in enumerate(zip(edges, edges[1:]))]
    dead = np.array(sorted({ordered[p] for p in dead_picks if p < len(ordered)}), dtype=np.int64)
    live = {r: t for r, t in rows.items() if r not in set(dead.tolist())}

    # Tombstoned rows still count in the statistics but never come back.
    _check(Postings(root, entries, dead).search(query, k), _bm25(live, rows, query), k)

    # Merged (in small key ranges, to go through the bounded copy), they are gone from the statistics too.
    original = postings._MERGE_POSTINGS
    postings._MERGE_POSTINGS = 5
    try:
        merged = merge_segments(root, entries, root, "merged", dead)
    finally:
        postings._MERGE_POSTINGS = original
    if not live:
        assert merged == []
        return
    assert merged[0]["rows"] == len(live)
    _check(Postings(root, merged, np.zeros(0, np.int64)).search(query, k), _bm25(live, live, query), k)


def test_frequencies_and_idf_count_every_segment(tmp_path: Path) -> None:
    first = _write(tmp_path, "a", {1: ["cat", "dog"], 2: ["cat"]})
    second = _write(tmp_path, "b", {3: ["cat", "emu"]})
    index = Postings(tmp_path, [first, second], np.zeros(0, np.int64))
    df = index.frequencies(postings.term_keys(["cat", "dog", "yak"]))
    assert df.tolist() == [3, 1, 0]
    assert index.idf(df)[1] == pytest.approx(math.log((3 - 1 + 0.5) / 1.5))
    assert index.idf(df)[0] == pytest.approx(1e-6)  # in every row: floored, never negative


def test_rows_without_terms_are_kept_in_the_statistics(tmp_path: Path) -> None:
    entry = _write(tmp_path, "a", {1: [], 2: ["cat"], 3: []})
    assert entry["rows"] == 3 and entry["postings"] == 1
    ids, scores = Postings(tmp_path, [entry], np.zeros(0, np.int64)).search(["cat"], 5)
    assert ids.tolist() == [2]
    assert scores[0] == pytest.approx(_bm25({2: ["cat"]}, {1: [], 2: ["cat"], 3: []}, ["cat"])[2], rel=1e-6)
    only_empty = _write(tmp_path, "b", {4: []})
    assert Postings(tmp_path, [only_empty], np.zeros(0, np.int64)).search(["cat"], 5)[0].tolist() == []


def test_a_damaged_file_is_named(tmp_path: Path) -> None:
    entry = _write(tmp_path, "a", {1: ["cat", "dog"], 2: ["cat"]})
    path = tmp_path / "lexical" / "a"
    whole = path.read_bytes()
    for damaged, says in ((whole[:-8], "truncated"), (b"XXXXXXXX" + whole[8:], "not a lexical segment"), (b"", "not a")):
        path.write_bytes(damaged)
        with pytest.raises(CorruptIndexError, match=f"{path}: .*{says}"):
            Postings(tmp_path, [entry], np.zeros(0, np.int64))
    path.write_bytes(whole)
    with pytest.raises(CorruptIndexError, match="does not match its manifest entry"):
        Postings(tmp_path, [{**entry, "rows": 3}], np.zeros(0, np.int64))
    path.unlink()
    with pytest.raises(CorruptIndexError, match="unreadable lexical segment"):
        Postings(tmp_path, [entry], np.zeros(0, np.int64))


def test_a_snapshot_opened_without_vectors_maps_its_postings_when_it_searches(tmp_path: Path) -> None:
    from indexer.store import IndexDirectory

    from .test_generations import clustered, one_doc
    from .test_store import publish

    vectors = clustered(30, 16, clusters=3, seed=5)
    records, chunks, _ = zip(*[one_doc(i, vectors) for i in range(30)])
    directory = IndexDirectory(tmp_path)
    publish(directory, list(records), list(chunks), vectors)
    with directory.open_current(dense=False) as snapshot:
        assert snapshot._postings is None  # a writer's lookups never pay for masking tombstones
        hits = snapshot.lexical().search("topic5", 10)
        assert {h.chunk.chunk_id for h in hits} == {f"c{i}" for i in range(30) if i % 13 == 5}
    with pytest.raises(StoreError, match="closed"):
        snapshot.lexical().search("topic5", 10)
