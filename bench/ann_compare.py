"""Which approximate FAISS index for iorag's dense search: recall@10 against exact, latency, build, size.

    nice .venv/bin/python bench/ann_compare.py --sets gauss-100k,gauss-1m,scifact,scifact-1m \
        [--candidates iorag,ivf-flat,hnsw16,hnsw32,hnsw-sq8] [--cache /tmp/iorag-annbench] [--json out.json]

Vector sets (384 dims, unit length, inner product; all cached under --cache, so reruns skip them):

    gauss-100k, gauss-1m  bench/scale.py's Gaussian mixture (256 clusters, `vector_of`), one vector per
                          made-up chunk name; 300 queries = stored vectors plus noise (0.3 per dim),
                          the way scale.py measures recall
    gauss-*-fresh         the same vectors; 300 queries drawn afresh from the mixture
    scifact               real MiniLM vectors: SciFact's corpus indexed by iorag itself (the offline
                          `local/all-MiniLM-L6-v2`, chunks as `iorag eval` cuts them: 5,183 abstracts,
                          9,880 chunks), read back from the index; its 300 test queries embedded as
                          iorag embeds queries
    scifact-1m            the SciFact chunk vectors plus 1M - 9,880 vectors drawn around them: each a
                          random real chunk vector plus Gaussian noise shaped by the real vectors'
                          covariance, scaled so a drawn vector is as close to its anchor as a real chunk
                          is to its nearest real neighbour (median cosine); the same 300 real queries

Candidates (each built once per set with 2 threads, then searched one query at a time with one thread,
as serving runs; the latency is of the Python call, rescoring included):

    exact      iorag's exact path (write_segment below the ANN threshold; a scan of the mapped vectors)
    iorag      iorag's own IVF-SQ8 + exact rescoring: `write_segment` and `FaissDense` from
               indexer/store/dense/faiss.py, at its nprobe and at the other nprobes given
    iorag-lists1, iorag-lists2   the same code with sqrt(n) or 2 sqrt(n) cells (tuning the constant)
    ivf-flat   IndexIVFFlat, same cells, no rescoring needed
    hnsw16/32  IndexHNSWFlat, M 16 / 32, efConstruction 40, by efSearch
    hnsw-sq8   IndexHNSWSQ (8-bit), M 32, candidates rescored exactly from the float32 vectors
    ivf-pq     IndexIVFPQ (48 x 8 bits), candidates rescored exactly (opt-in, not in the default list)

"disk" is what a segment keeps (vectors.npy counts for iorag and for every variant that rescores);
"RAM" is the index file a reader loads (the float32 vectors stay memory-mapped). Results and the choice
they led to: docs/benchmarks.md, "Dense index choice".
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterator

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import faiss  # type: ignore[import-untyped]  # noqa: E402

from indexer.store.dense import faiss as iorag_faiss  # noqa: E402
from scale import DIMS, vector_of  # noqa: E402

K = 10
QUERIES = 300
BUILD_THREADS = 2
SCIFACT = ROOT.parent / "shared" / "datasets" / "scifact"

# -- vector sets -------------------------------------------------------------------------------


def _cached(path: Path, make: Callable[[], np.ndarray]) -> np.ndarray:
    if not path.exists():
        array = np.ascontiguousarray(make(), dtype=np.float32)
        np.save(path.with_suffix(".tmp.npy"), array)
        os.replace(path.with_suffix(".tmp.npy"), path)
    return np.load(path, mmap_mode="r")


def gauss_set(cache: Path, n: int, fresh: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """bench/scale.py's mixture: `vector_of` seeds each vector from a text's hash.

    Queries as scale.py draws them (a stored vector plus noise of 0.3 per dimension, which at 384
    dimensions outweighs the vector about six to one), or, `fresh`, new draws from the mixture.
    """
    base = _cached(cache / "gauss-1000000.npy", lambda: np.stack([vector_of(f"chunk-{i}") for i in range(1_000_000)]))
    vectors = np.ascontiguousarray(base[:n])
    if fresh:
        return vectors, np.stack([vector_of(f"query-{i}") for i in range(QUERIES)])
    rng = np.random.default_rng(5)
    picks = rng.integers(0, n, QUERIES)
    queries = vectors[picks] + 0.3 * rng.standard_normal((QUERIES, DIMS)).astype(np.float32)
    return vectors, (queries / np.linalg.norm(queries, axis=1, keepdims=True)).astype(np.float32)


def _scifact_chunks(cache: Path) -> np.ndarray:
    """Index SciFact with iorag (offline model; embeddings kept in the index's own cache) and read its vectors."""
    from indexer import Indexer

    index_dir = cache / "scifact-index"
    Indexer(index_dir).index([str(SCIFACT / "corpus.jsonl")])
    current = json.loads((index_dir / "CURRENT").read_text())
    snap = index_dir / "snapshots" / current["snapshot"]
    parts = [np.load(snap / "segments" / s["name"] / "vectors.npy") for s in current["segments"]]
    return np.concatenate(parts)


def _scifact_queries() -> np.ndarray:
    from indexer.local import LocalEmbedder

    texts = [json.loads(line)["text"] for line in (SCIFACT / "queries.jsonl").read_text().splitlines() if line.strip()]
    embedder = LocalEmbedder()
    return np.stack([embedder.embed_sync([embedder.model.format_query(t)])[0] for t in texts])


def scifact_set(cache: Path) -> tuple[np.ndarray, np.ndarray]:
    chunks = _cached(cache / "scifact-chunks.npy", lambda: _scifact_chunks(cache))
    queries = _cached(cache / "scifact-queries.npy", _scifact_queries)
    return np.ascontiguousarray(chunks), np.ascontiguousarray(queries)


def _around(real: np.ndarray, n: int) -> np.ndarray:
    """n vectors near the real ones, with the real vectors' covariance (see the module docstring)."""
    rng = np.random.default_rng(11)
    centred = real - real.mean(axis=0)
    cov = centred.T @ centred / len(real)
    root = np.linalg.cholesky(cov + 1e-6 * np.eye(real.shape[1])).astype(np.float32)
    sims = real @ real.T
    np.fill_diagonal(sims, -1)
    target = float(np.median(sims.max(axis=1)))

    def draw(count: int, scale: float) -> tuple[np.ndarray, np.ndarray]:
        anchors = rng.integers(0, len(real), count)
        points = real[anchors] + scale * (rng.standard_normal((count, real.shape[1])).astype(np.float32) @ root.T)
        points /= np.linalg.norm(points, axis=1, keepdims=True)
        return points, np.einsum("ij,ij->i", points, real[anchors])

    low, high = 0.05, 5.0  # bisect the noise scale on a sample
    for _ in range(20):
        mid = (low + high) / 2
        if float(np.median(draw(4000, mid)[1])) > target:
            low = mid
        else:
            high = mid
    print(f"scifact-1m: median nearest-neighbour cosine {target:.3f}, noise scale {low:.3f}", file=sys.stderr)
    out = np.empty((n, real.shape[1]), dtype=np.float32)
    for start in range(0, n, 100_000):
        out[start : start + 100_000] = draw(min(100_000, n - start), low)[0]
    return out


def scifact_1m_set(cache: Path) -> tuple[np.ndarray, np.ndarray]:
    real, queries = scifact_set(cache)
    drawn = _cached(cache / "scifact-around.npy", lambda: _around(real, 1_000_000 - len(real)))
    # Real vectors spread through the drawn ones, so no index sees them as one block.
    vectors = np.concatenate([real, drawn])[np.random.default_rng(3).permutation(1_000_000)]
    return np.ascontiguousarray(vectors), queries


SETS: dict[str, Callable[[Path], tuple[np.ndarray, np.ndarray]]] = {
    "gauss-100k": lambda cache: gauss_set(cache, 100_000),
    "gauss-1m": lambda cache: gauss_set(cache, 1_000_000),
    "gauss-100k-fresh": lambda cache: gauss_set(cache, 100_000, fresh=True),
    "gauss-1m-fresh": lambda cache: gauss_set(cache, 1_000_000, fresh=True),
    "scifact": scifact_set,
    "scifact-1m": scifact_1m_set,
}


def exact_top(vectors: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """The true top-k row positions of each query (brute force, in blocks)."""
    best = np.zeros((len(queries), 0), dtype=np.int64)
    best_scores = np.zeros((len(queries), 0), dtype=np.float32)
    for start in range(0, len(vectors), 200_000):
        scores = queries @ vectors[start : start + 200_000].T
        top = np.argpartition(-scores, K - 1, axis=1)[:, :K]
        best = np.concatenate([best, top + start], axis=1)
        best_scores = np.concatenate([best_scores, np.take_along_axis(scores, top, axis=1)], axis=1)
        keep = np.argsort(-best_scores, axis=1)[:, :K]
        best, best_scores = np.take_along_axis(best, keep, axis=1), np.take_along_axis(best_scores, keep, axis=1)
    return best


# -- candidates --------------------------------------------------------------------------------


def _rescore(vectors: np.ndarray, found: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Exact top-k among candidate positions, as iorag rescores (rows read in file order)."""
    positions = np.sort(found[found >= 0])
    scores = np.asarray(vectors[positions]) @ query
    take = min(K, len(scores))
    return positions[np.argpartition(-scores, take - 1)[:take]]


def _dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


class Candidate:
    """One index type: build once, then a search function per setting."""

    name = ""

    def build(self, vectors: np.ndarray, workdir: Path) -> dict[str, Any]:
        raise NotImplementedError

    def settings(self, rows: int) -> Iterator[tuple[str, Callable[[np.ndarray], np.ndarray]]]:
        raise NotImplementedError


class IoragSegment(Candidate):
    """iorag's own code: one segment written by `write_segment`, searched through `FaissDense`."""

    def __init__(self, exact: bool, probes: list[int], lists_factor: float | None = None) -> None:
        self.name = "exact" if exact else "iorag"
        self.exact = exact
        self.probes = probes
        self.lists_factor = lists_factor

    def build(self, vectors: np.ndarray, workdir: Path) -> dict[str, Any]:
        directory = workdir / self.name
        ids = np.arange(len(vectors), dtype=np.int64)
        threshold = len(vectors) + 1 if self.exact else 0
        rule = iorag_faiss._lists_for
        if self.lists_factor is not None:  # the same code with another number of cells, to tune the constant
            factor = self.lists_factor
            iorag_faiss._lists_for = lambda rows: max(16, int(factor * math.sqrt(rows)))
        started = time.perf_counter()
        try:
            entry = iorag_faiss.write_segment(directory, "seg", ids, vectors, threshold)
        finally:
            iorag_faiss._lists_for = rule
        seconds = time.perf_counter() - started
        self.dense = iorag_faiss.FaissDense(directory, [entry], vectors.shape[1], np.zeros(0, np.int64))
        ann = directory / "seg" / "ann.faiss"
        segment = self.dense._segments[0]
        self.default_probes = int(segment.ann.nprobe) if segment.ann is not None else 0
        return {"build_s": seconds, "disk_mb": _dir_bytes(directory) / 2**20,
                "ram_mb": (ann.stat().st_size if ann.exists() else 0) / 2**20,
                "params": f"lists {segment.ann.nlist}" if segment.ann is not None else "flat scan"}

    def settings(self, rows: int) -> Iterator[tuple[str, Callable[[np.ndarray], np.ndarray]]]:
        def search(query: np.ndarray) -> np.ndarray:
            return self.dense.search(query[None, :], K)[1][0]

        if self.exact:
            yield "", search
            return
        ann = self.dense._segments[0].ann
        for probes in sorted({self.default_probes, *self.probes}):
            ann.nprobe = probes
            yield f"nprobe {probes}" + (" (default)" if probes == self.default_probes else ""), search
        ann.nprobe = self.default_probes


class FaissCandidate(Candidate):
    """A plain faiss index; `rescore` keeps `factor * k` candidates and rescores them exactly."""

    def __init__(self, name: str, make: Callable[[int, int], Any], knob: str, values: list[int], rescore: int = 0,
                 train: bool = False) -> None:
        self.name, self.make, self.knob, self.values, self.rescore, self.train = name, make, knob, values, rescore, train

    def build(self, vectors: np.ndarray, workdir: Path) -> dict[str, Any]:
        rows, dims = vectors.shape
        started = time.perf_counter()
        self.index = self.make(rows, dims)
        if self.train:
            sample = min(rows, iorag_faiss._lists_for(rows) * 50)
            picked = np.sort(np.random.default_rng(0).choice(rows, size=sample, replace=False))
            self.index.train(np.ascontiguousarray(vectors[picked]))
        for start in range(0, rows, 65_536):
            self.index.add(np.ascontiguousarray(vectors[start : start + 65_536]))
        seconds = time.perf_counter() - started
        path = workdir / f"{self.name}.faiss"
        faiss.write_index(self.index, str(path))
        size = path.stat().st_size
        path.unlink()
        self.vectors = vectors
        vectors_mb = vectors.nbytes / 2**20 if self.rescore else 0.0
        return {"build_s": seconds, "disk_mb": size / 2**20 + vectors_mb, "ram_mb": size / 2**20,
                "params": f"rescore {self.rescore}k" if self.rescore else ""}

    def settings(self, rows: int) -> Iterator[tuple[str, Callable[[np.ndarray], np.ndarray]]]:
        wanted = K * self.rescore if self.rescore else K
        for value in self.values:
            if self.knob == "efSearch":
                self.index.hnsw.efSearch = max(value, wanted)
            else:
                self.index.nprobe = value

            def search(query: np.ndarray) -> np.ndarray:
                _, found = self.index.search(query[None, :], wanted)
                return _rescore(self.vectors, found[0], query) if self.rescore else found[0]

            yield f"{self.knob} {max(value, wanted) if self.knob == 'efSearch' else value}", search


def _hnsw(m: int) -> Callable[[int, int], Any]:
    return lambda rows, dims: faiss.IndexHNSWFlat(dims, m, faiss.METRIC_INNER_PRODUCT)


def _ivf_flat(rows: int, dims: int) -> Any:
    return faiss.IndexIVFFlat(faiss.IndexFlatIP(dims), dims, iorag_faiss._lists_for(rows), faiss.METRIC_INNER_PRODUCT)


def _ivf_pq(rows: int, dims: int) -> Any:
    return faiss.IndexIVFPQ(faiss.IndexFlatIP(dims), dims, iorag_faiss._lists_for(rows), 48, 8,
                            faiss.METRIC_INNER_PRODUCT)


def _hnsw_sq8(rows: int, dims: int) -> Any:
    return faiss.IndexHNSWSQ(dims, faiss.ScalarQuantizer.QT_8bit, 32, faiss.METRIC_INNER_PRODUCT)


def candidate(name: str) -> Candidate:
    probes = [8, 16, 32, 64, 128]
    every: dict[str, Callable[[], Candidate]] = {
        "exact": lambda: IoragSegment(True, []),
        "iorag": lambda: IoragSegment(False, probes),
        # iorag's code with sqrt(n) and 2 sqrt(n) cells instead of its rule (cheaper to train)
        "iorag-lists1": lambda: IoragSegment(False, probes, 1.0),
        "iorag-lists2": lambda: IoragSegment(False, probes, 2.0),
        "ivf-flat": lambda: FaissCandidate("ivf-flat", _ivf_flat, "nprobe", probes, train=True),
        "hnsw16": lambda: FaissCandidate("hnsw16", _hnsw(16), "efSearch", [32, 64, 128, 256]),
        "hnsw32": lambda: FaissCandidate("hnsw32", _hnsw(32), "efSearch", [32, 64, 128, 256]),
        "hnsw-sq8": lambda: FaissCandidate("hnsw-sq8", _hnsw_sq8, "efSearch", [32, 64, 128], rescore=4, train=True),
        "ivf-pq": lambda: FaissCandidate("ivf-pq", _ivf_pq, "nprobe", probes, rescore=8, train=True),
    }
    return every[name]()


# -- measuring ---------------------------------------------------------------------------------


def measure(search: Callable[[np.ndarray], np.ndarray], queries: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    for query in queries[:20]:  # warm the caches (and the mapped pages) the way a server is warm
        search(query)
    times, hits = [], 0
    for query, true in zip(queries, truth):
        started = time.perf_counter()
        found = search(query)
        times.append(time.perf_counter() - started)
        hits += len(set(found[found >= 0].tolist()) & set(true.tolist()))
    times.sort()
    return {"recall_at_10": hits / (K * len(queries)), "p50_ms": 1000 * statistics.median(times),
            "p99_ms": 1000 * times[int(0.99 * len(times))]}


def run_set(name: str, cache: Path, names: list[str]) -> list[dict[str, Any]]:
    vectors, queries = SETS[name](cache)
    truth_file = cache / f"truth-{name}.npy"
    if not truth_file.exists():
        np.save(truth_file, exact_top(vectors, queries))
    truth = np.load(truth_file)
    rows: list[dict[str, Any]] = []
    for index_name in names:
        # One candidate at a time, dropped before the next is built: at 1M each holds gigabytes.
        built_one = candidate(index_name)
        with tempfile.TemporaryDirectory(dir=cache) as workdir:
            faiss.omp_set_num_threads(BUILD_THREADS)
            built = built_one.build(vectors, Path(workdir))
            faiss.omp_set_num_threads(1)
            for setting, search in built_one.settings(len(vectors)):
                row = {"set": name, "rows": len(vectors), "index": index_name, "setting": setting,
                       **built, **measure(search, queries, truth)}
                row = {k: round(v, 4 if k == "recall_at_10" else 2) if isinstance(v, float) else v
                       for k, v in row.items()}
                print(json.dumps(row), flush=True)
                rows.append(row)
            del built_one, search
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| set | index | setting | recall@10 | p50 ms | p99 ms | build s | disk MB | RAM MB |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['set']} | {r['index']} {r['params']} | {r['setting']} | {r['recall_at_10']:.4f} | "
                     f"{r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['build_s']:.1f} | {r['disk_mb']:.0f} | "
                     f"{r['ram_mb']:.0f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sets", default="gauss-100k,scifact", help=f"comma-separated, of {', '.join(SETS)}")
    parser.add_argument("--candidates", default="exact,iorag,ivf-flat,hnsw16,hnsw32,hnsw-sq8")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/iorag-annbench"))
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    for name in args.sets.split(","):
        rows += run_set(name, args.cache, args.candidates.split(","))
        if args.json:
            args.json.write_text(json.dumps(rows, indent=1))
    print(table(rows))


if __name__ == "__main__":
    main()
