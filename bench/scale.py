"""How iorag's store grows: build, write, open and search synthetic indexes of 20k to 1M chunks.

    .venv/bin/python bench/scale.py --sizes 10000,100000 [--dir /tmp/iorag-scale] [--json out.json]

`--sizes` counts documents. Each is 180 words (12 sentences) drawn from a Zipf law over a
30,000-word vocabulary of made-up words, which WordPiece cuts into many pieces: two chunks
per document (the `chunks` column is read from the index). Vectors come from a fast deterministic embedder (384 dims, a
Gaussian mixture of 256 clusters seeded by the text's hash), passed as
`Indexer(embedder=...)`, so only iorag's own work is timed. Every step runs in a
child process so peak and serving RSS are its own:

    build   bulk-index N documents in batches of 10,000: seconds of iorag's own work (wall time
            minus making up the documents and their vectors), wall seconds, peak RSS
    serve   open the index (IndexDirectory.open_current + Retriever), p50/p99 of each
            search mode over 300 queries, recall@10 of dense search against exact
            search (the same live vectors, brute force), serving RSS
    write   add, edit and delete one document (each published): median of 5
    compact `iorag compact`'s library call: seconds

The same script measures an older checkout with IORAG_BENCH_SOURCE=/path/to/it (no
compaction there: reported as null; recall is measured on this format only).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

#: Which iorag to measure: this checkout, or another one's root (to measure an older version).
SOURCE = Path(os.environ.get("IORAG_BENCH_SOURCE", Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(SOURCE))

DIMS = 384
CLUSTERS = 256
VOCABULARY = 30_000
WORDS_PER_DOC = 180
BATCH_DOCS = 10_000
MODEL_ID = "bench/gauss-384"


def _vocabulary() -> list[str]:
    rng = np.random.default_rng(1)
    syllables = ["ka", "lo", "mi", "ra", "te", "su", "no", "vi", "de", "po", "an", "el", "or", "ix", "um", "ba"]
    words = set()
    while len(words) < VOCABULARY:
        n = int(rng.integers(2, 5))
        words.add("".join(syllables[int(i)] for i in rng.integers(0, len(syllables), n)))
    return sorted(words)


WORDS = _vocabulary()
_RANKS = np.arange(1, VOCABULARY + 1, dtype=np.float64)
_ZIPF_CDF = np.cumsum(1 / _RANKS**1.07) / (1 / _RANKS**1.07).sum()
_CENTERS = np.random.default_rng(7).standard_normal((CLUSTERS, DIMS)).astype(np.float32)


def document_text(i: int, version: int = 0) -> str:
    rng = np.random.default_rng([i, version])
    # Inverse-CDF sampling of the Zipf law (rng.choice with p= rebuilds the CDF every call).
    picks = np.minimum(np.searchsorted(_ZIPF_CDF, rng.random(WORDS_PER_DOC)), VOCABULARY - 1)
    words = [WORDS[int(p)] for p in picks]
    # Sentences of 15 words, as prose has: the chunker splits at sentence ends.
    return " ".join(" ".join(words[i : i + 15]).capitalize() + "." for i in range(0, len(words), 15))


def vector_of(text: str) -> np.ndarray:
    seed = int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")
    rng = np.random.default_rng(seed)
    v = _CENTERS[seed % CLUSTERS] + 0.6 * rng.standard_normal(DIMS).astype(np.float32)
    return (v / np.linalg.norm(v)).astype(np.float32)


class GaussEmbedder:
    """Near-free deterministic embedder: a Gaussian-mixture vector per text."""

    def __init__(self) -> None:
        from indexer.catalog import ModelInfo
        from indexer.tokens import counter_for

        self.model = ModelInfo(id=MODEL_ID, kind="embedding", context_length=512, tokenizer="bert-uncased",
                               dims=DIMS, provider="local")
        self.counter = counter_for(self.model)
        self.concurrency = 1
        self.max_batch_items = 4096
        self.max_batch_tokens = 4096 * 512

    #: Seconds spent making vectors, left out of the build time iorag is judged by.
    seconds = 0.0

    async def embed_batch(self, texts: Sequence[str]) -> np.ndarray:
        started = time.perf_counter()
        vectors = np.stack([vector_of(t) for t in texts])
        GaussEmbedder.seconds += time.perf_counter() - started
        return vectors

    async def embed_query(self, text: str) -> np.ndarray:
        return vector_of(text)

    async def aclose(self) -> None:
        pass


def _documents(start: int, stop: int, version: int = 0) -> list[Any]:
    from indexer import Document

    return [Document(id=f"doc-{i:07d}", text=document_text(i, version), source="api") for i in range(start, stop)]


def _indexer(index_dir: Path) -> Any:
    from indexer import Indexer

    return Indexer(index_dir, embedder=GaussEmbedder())


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def step_build(index_dir: Path, chunks: int) -> dict[str, Any]:
    indexer = _indexer(index_dir)
    started = time.perf_counter()
    generating = 0.0
    for start in range(0, chunks, BATCH_DOCS):
        t = time.perf_counter()
        documents = _documents(start, min(chunks, start + BATCH_DOCS))
        generating += time.perf_counter() - t
        indexer.add_documents(documents)
    wall = time.perf_counter() - started
    # iorag's own time: without making up the documents and their vectors (both the bench's).
    return {"build_s": round(wall - generating - GaussEmbedder.seconds, 1), "build_wall_s": round(wall, 1),
            "build_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}


def _queries(n: int) -> list[str]:
    rng = np.random.default_rng(99)
    # Query words from the middle of the vocabulary: specific enough to be worth searching for.
    return [" ".join(WORDS[int(i)] for i in rng.integers(50, 5000, int(rng.integers(3, 7)))) for _ in range(n)]


def _exact_top(index_dir: Path, queries: np.ndarray, k: int) -> list[set[int]] | None:
    """Brute force over the live vectors of the current generation (format 2 only)."""
    import sqlite3

    current = json.loads((index_dir / "CURRENT").read_text())
    if current.get("format") not in (2, 3) or current["dense"]["backend"] != "faiss":
        return None
    snap = index_dir / "snapshots" / current["snapshot"]
    conn = sqlite3.connect(snap / "chunks.sqlite")
    dead = np.array([r[0] for r in conn.execute("SELECT id FROM chunks WHERE deleted IS NOT NULL")], dtype=np.int64)
    conn.close()
    best: list[list[tuple[float, int]]] = [[] for _ in range(len(queries))]
    for segment in current["segments"]:
        ids = np.load(snap / "segments" / segment["name"] / "ids.npy")
        vectors = np.load(snap / "segments" / segment["name"] / "vectors.npy", mmap_mode="r")
        live = ~np.isin(ids, dead)
        scores = np.asarray(vectors) @ queries.T
        scores[~live] = -np.inf
        for q in range(len(queries)):
            # Segments a write left behind may hold fewer rows than k.
            top = np.argpartition(-scores[:, q], k)[:k] if len(ids) > k else np.arange(len(ids))
            best[q] += [(float(scores[t, q]), int(ids[t])) for t in top]
    return [{i for _, i in sorted(b, reverse=True)[:k]} for b in best]


def step_serve(index_dir: Path) -> dict[str, Any]:
    from indexer.store import IndexDirectory
    from service.retrieval import Retriever

    embedder = GaussEmbedder()
    started = time.perf_counter()
    snapshot = IndexDirectory(index_dir).open_current()
    retriever = Retriever(snapshot, embedder)
    asyncio.run(retriever.search("warm up", 10, "hybrid"))
    result: dict[str, Any] = {"open_s": round(time.perf_counter() - started, 3)}
    if hasattr(snapshot.manifest, "chunks"):
        result["chunks"] = snapshot.manifest.chunks
    queries = _queries(300)
    for mode in ("dense", "lexical", "hybrid"):
        times = []
        for query in queries:
            t = time.perf_counter()
            asyncio.run(retriever.search(query, 10, mode))  # type: ignore[arg-type]
            times.append(time.perf_counter() - t)
        times.sort()
        result[f"{mode}_p50_ms"] = round(1000 * times[len(times) // 2], 2)
        result[f"{mode}_p99_ms"] = round(1000 * times[int(len(times) * 0.99)], 2)
    result["serving_rss_mb"] = round(_rss_mb())
    # Recall: queries near stored points (a document's vector, perturbed).
    rng = np.random.default_rng(5)
    picks = rng.integers(0, snapshot.manifest.documents, 200)
    qv = np.stack([vector_of(document_text(int(i))) + 0.3 * rng.standard_normal(DIMS).astype(np.float32)
                   for i in picks]).astype(np.float32)
    qv /= np.linalg.norm(qv, axis=1, keepdims=True)
    exact = _exact_top(index_dir, qv, 10)
    if exact is not None:
        found = snapshot.search(qv, 10)
        hits = 0
        for row, truth in zip(found, exact):
            truth_ids = {c.chunk_id for c in snapshot.rows(sorted(truth)).values()}
            hits += len({h.chunk.chunk_id for h in row} & truth_ids)
        result["dense_recall_at_10"] = round(hits / (10 * len(exact)), 4)
    else:
        result["dense_recall_at_10"] = None
    return result


def step_write(index_dir: Path, chunks: int) -> dict[str, Any]:
    indexer = _indexer(index_dir)
    timings: dict[str, list[float]] = {"add": [], "edit": [], "delete": []}
    # Ids and versions new to this index, so the step can run again on it (compaction included,
    # which starts the generations over).
    fresh = time.time_ns() // 1_000_000
    for n in range(5):
        new = chunks + 1_000_000 + fresh + n
        for name, call in (
            ("add", lambda: indexer.add_documents(_documents(new, new + 1))),
            ("edit", lambda: indexer.add_documents(_documents(n * 7, n * 7 + 1, version=1 + fresh + n))),
            ("delete", lambda: indexer.delete_documents([f"doc-{new:07d}"])),
        ):
            t = time.perf_counter()
            report = call()
            timings[name].append(time.perf_counter() - t)
            assert report.published, f"{name} did not publish"
    return {f"{name}_ms": round(1000 * statistics.median(values), 1) for name, values in timings.items()}


def step_compact(index_dir: Path) -> dict[str, Any]:
    indexer = _indexer(index_dir)
    if not hasattr(indexer, "compact"):
        return {"compact_s": None}
    t = time.perf_counter()
    indexer.compact()
    return {"compact_s": round(time.perf_counter() - t, 2)}


STEPS = {"build": step_build, "serve": step_serve, "write": step_write, "compact": step_compact}


def _child(step: str, index_dir: Path, chunks: int) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, "--step", step, "--dir", str(index_dir), "--chunks", str(chunks)],
        capture_output=True, text=True, check=False,
    )
    if out.returncode != 0:
        raise SystemExit(f"step {step} at {chunks} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,100000", help="comma-separated document counts")
    parser.add_argument("--dir", type=Path, default=Path("/tmp/iorag-scale"))
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--reuse", action="store_true", help="skip the build when the index exists")
    parser.add_argument("--step", choices=sorted(STEPS), help=argparse.SUPPRESS)
    parser.add_argument("--chunks", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.step:
        kwargs = {"chunks": args.chunks} if args.step in ("build", "write") else {}
        print(json.dumps(STEPS[args.step](args.dir, **kwargs)))
        return
    results = []
    for size in (int(s) for s in args.sizes.split(",")):
        index_dir = args.dir / f"n{size}"
        row: dict[str, Any] = {"documents": size}
        if not (args.reuse and (index_dir / "CURRENT").exists()):
            if index_dir.exists():
                subprocess.run(["rm", "-rf", str(index_dir)], check=True)
            row.update(_child("build", index_dir, size))
        for step in ("serve", "write", "compact"):
            row.update(_child(step, index_dir, size))
            print(json.dumps(row), file=sys.stderr, flush=True)
        results.append(row)
        print(json.dumps(row), flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
