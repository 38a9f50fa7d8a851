"""The FAISS dense backend: immutable vector segments in the snapshot directory; the only faiss import.

A segment is a directory `segments/<name>/` holding

    vectors.npy   float32 (rows, dims), memory-mapped by readers (never copied per request)
    ids.npy       int64 chunk row ids, ascending
    ann.faiss     only for segments of at least `ann_min_rows` rows: an IVF index with
                  8-bit scalar quantization over the row positions

Small segments are searched exactly (one matrix-vector product over the mapped
vectors). Large ones go through the IVF index for candidates, which are then
rescored exactly from the mapped vectors, so scores are exact inner products and
the approximation only decides which rows are looked at. Deleted rows are masked
out before the top k is taken, so a deleted chunk is never returned.

Why IVF with 8-bit codes and not HNSW: measured with bench/ann_compare.py
(docs/benchmarks.md, "Dense index choice"), HNSW matches IVF on SciFact's real
MiniLM vectors but missed many neighbours at efSearch 256 where IVF reached 0.99:
recall@10 0.56 on bench/scale.py's Gaussian mixture at 100k rows, 0.82 on 1M
vectors drawn around SciFact's; it also built slower at 1M. The 8-bit codes keep
a reader's memory at a quarter of the vectors. How many cells a query
visits is decided when a segment is opened (`_probes_for`), not stored with it,
so segments written under an older rule follow the current one.
"""

from __future__ import annotations

import math
import mmap
import os
import secrets
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

try:
    import faiss  # type: ignore[import-untyped]
except ImportError as exc:  # pragma: no cover - faiss-cpu is a core dependency
    raise ImportError("faiss is not available - install faiss-cpu (pip install faiss-cpu)") from exc

from ...errors import CorruptIndexError
from ..durable import fsync_path, remove_tree
from .base import DenseBackend, Segment

SEGMENTS = "segments"
#: Segments with at least this many rows get an approximate (IVF) index: an index smaller than
#: this is searched exactly.
ANN_MIN_ROWS = 20_000
#: Once the index as a whole is that large (so approximate anyway), a write's segment gets an IVF
#: index from this size on: an exact scan reads every vector of a segment per query (1.5 KB a row
#: at 384 dims, 30 MB at 20k rows), which cost milliseconds per query for segments just under
#: ANN_MIN_ROWS; below this size the scan is a fraction of a millisecond.
ANN_MIN_ROWS_IN_LARGE = 2_048
#: Candidates taken from the IVF index per result wanted, then rescored exactly.
RERANK_FACTOR = 8
#: Rows copied at a time when merging (bounds memory whatever the index size).
_COPY_ROWS = 65_536
#: Map the IVF index's codes from the file instead of reading them (faiss >= 1.9): opening a
#: million-row segment takes 0.02 s instead of 0.1 to 1.2 s (warm to cold page cache), the pages
#: are shared between server processes, and a search costs about 0.2 ms more.
_READ_FLAGS = getattr(faiss, "IO_FLAG_MMAP_IFC", 0)


def _lists_for(rows: int) -> int:
    """IVF cells: about 4 * sqrt(rows), the usual rule of thumb."""
    return max(16, int(4 * math.sqrt(rows)))


def _probes_for(lists: int, rows: int) -> int:
    """Cells visited per query: a share of the cells that shrinks as the segment grows.

    Measured with bench/ann_compare.py for recall@10 >= 0.95 with a margin: real MiniLM
    vectors (SciFact) need about 16 % of the cells at 10k rows, the Gaussian mixture 5 % at
    100k and 3 % at 1M; so 16 / sqrt(rows) of the cells, and never fewer than 1 in 32.
    """
    share = max(1 / 32, 16 / math.sqrt(max(rows, 1)))
    return max(1, min(lists, math.ceil(share * lists)))


def _build_ann(vectors: np.ndarray) -> Any:
    rows, dims = vectors.shape
    lists = _lists_for(rows)
    quantizer = faiss.IndexFlatIP(dims)
    index = faiss.IndexIVFScalarQuantizer(quantizer, dims, lists, faiss.ScalarQuantizer.QT_8bit,
                                          faiss.METRIC_INNER_PRODUCT)
    # Segments of 2k-24k rows train fewer than FAISS's 39 points per cell (11 at 2,048 rows), and
    # FAISS says so on stderr in the middle of `iorag index`. Measured on the scale benchmark's
    # mixture, recall@10 stays 0.98-0.999 there, and fewer cells to reach 39 a cell lost recall
    # (0.86 at 2,048 rows, same share of cells visited): so keep the cells, without the warning.
    index.cp.min_points_per_centroid = 5
    # Training on a sample: k-means cost grows with it, the centroids hardly improve past ~50 per cell.
    sample = min(rows, lists * 50)
    picked = np.sort(np.random.default_rng(0).choice(rows, size=sample, replace=False))
    index.train(np.ascontiguousarray(vectors[picked], dtype=np.float32))
    for start in range(0, rows, _COPY_ROWS):
        index.add(np.ascontiguousarray(vectors[start : start + _COPY_ROWS], dtype=np.float32))
    index.nprobe = _probes_for(lists, rows)
    return index


def _finish(tmp: Path, final: Path, vectors_file: Path, ann_min_rows: int) -> dict[str, Any]:
    """Build the ANN index if the segment is large, fsync everything, rename into place."""
    vectors = np.load(vectors_file, mmap_mode="r")
    rows = int(vectors.shape[0])
    ann = rows >= ann_min_rows
    if ann:
        faiss.write_index(_build_ann(vectors), str(tmp / "ann.faiss"))
    del vectors
    for file in tmp.iterdir():
        fsync_path(file)
    fsync_path(tmp, directory=True)
    os.rename(tmp, final)
    fsync_path(final.parent, directory=True)
    return {"name": final.name, "rows": rows, "ann": ann}


def write_segment(directory: Path, name: str, ids: np.ndarray, vectors: np.ndarray, ann_min_rows: int) -> dict[str, Any]:
    """Write one segment durably under `directory/name`; returns its manifest entry."""
    directory.mkdir(exist_ok=True)
    tmp = directory / f".tmp-{name}"
    remove_tree(tmp)
    tmp.mkdir()
    np.save(tmp / "ids.npy", np.asarray(ids, dtype=np.int64))
    np.save(tmp / "vectors.npy", np.ascontiguousarray(vectors, dtype=np.float32))
    return _finish(tmp, directory / name, tmp / "vectors.npy", ann_min_rows)


class FaissBackend(DenseBackend):
    """Vectors in `.npy` segments beside the snapshot's SQLite file (see the module docstring)."""

    name = "faiss"

    def __init__(self, ann_min_rows: int = ANN_MIN_ROWS) -> None:
        self.ann_min_rows = ann_min_rows

    def create(self, snapshot_dir: Path, snapshot_id: str, dims: int) -> dict[str, Any]:
        (snapshot_dir / SEGMENTS).mkdir(parents=True, exist_ok=True)
        return {"backend": "faiss"}

    def add(
        self, snapshot_dir: Path, entry: Mapping[str, Any], segments: Sequence[Segment], name: str,
        ids: np.ndarray, vectors: np.ndarray,
    ) -> list[dict[str, Any]]:
        kept = [dict(s) for s in segments]
        if len(ids):
            total = sum(int(s["rows"]) for s in segments) + len(ids)
            threshold = self.ann_min_rows if total < self.ann_min_rows else min(self.ann_min_rows, ANN_MIN_ROWS_IN_LARGE)
            kept.append(write_segment(snapshot_dir / SEGMENTS, name, ids, vectors, threshold))
        return kept

    def merge(
        self, source_dir: Path, source: Mapping[str, Any], segments: Sequence[Segment],
        target_dir: Path, target: Mapping[str, Any], name: str, dead: np.ndarray,
    ) -> list[dict[str, Any]]:
        """One segment from all of them (in any order), without dead rows, ids ascending, copied in
        bounded slices."""
        origin, directory = source_dir / SEGMENTS, target_dir / SEGMENTS
        directory.mkdir(parents=True, exist_ok=True)
        parts = [(np.load(origin / s["name"] / "ids.npy"), np.load(origin / s["name"] / "vectors.npy", mmap_mode="r"))
                 for s in segments]
        keeps = [~np.isin(ids, dead) for ids, _ in parts]
        rows = int(sum(int(k.sum()) for k in keeps))
        if rows == 0:
            return []
        dims = int(parts[0][1].shape[1])
        # Where each live row comes from (segment, position), in ascending id order.
        ids = np.concatenate([part_ids[keep] for (part_ids, _), keep in zip(parts, keeps)])
        part_of = np.concatenate([np.full(int(keep.sum()), p, dtype=np.int64) for p, keep in enumerate(keeps)])
        position = np.concatenate([np.flatnonzero(keep) for keep in keeps])
        order = np.argsort(ids, kind="stable")
        ids, part_of, position = ids[order], part_of[order], position[order]
        tmp = directory / f".tmp-{name}"
        remove_tree(tmp)
        tmp.mkdir()
        out = np.lib.format.open_memmap(tmp / "vectors.npy", mode="w+", dtype=np.float32, shape=(rows, dims))
        for start in range(0, rows, _COPY_ROWS):
            stop = min(rows, start + _COPY_ROWS)
            block = np.empty((stop - start, dims), dtype=np.float32)
            for p in np.unique(part_of[start:stop]):
                mine = part_of[start:stop] == p
                block[mine] = parts[int(p)][1][position[start:stop][mine]]
            out[start:stop] = block
        out.flush()
        del out
        np.save(tmp / "ids.npy", ids)
        return [_finish(tmp, directory / name, tmp / "vectors.npy", self.ann_min_rows)]

    def open(
        self, snapshot_dir: Path, entry: Mapping[str, Any], segments: Sequence[Segment], dims: int,
        dead: np.ndarray,
    ) -> FaissDense:
        return FaissDense(snapshot_dir / SEGMENTS, segments, dims, dead)

    def verify(self, snapshot_dir: Path, segments: Sequence[Segment]) -> None:
        for entry in segments:
            where = snapshot_dir / SEGMENTS / str(entry["name"])
            for name in ("ids.npy", "vectors.npy", *(("ann.faiss",) if entry.get("ann") else ())):
                if not (where / name).is_file():
                    raise CorruptIndexError(f"{where}: unreadable vector segment: {name} is missing")

    def collect(self, snapshot_dir: Path, keep: set[str]) -> None:
        directory = snapshot_dir / SEGMENTS
        try:
            for entry in directory.iterdir():
                if entry.name not in keep:
                    remove_tree(entry)
        except OSError:
            pass


def _map_vectors(path: Path, *, randomly: bool) -> np.ndarray:
    """A `.npy` file's array over a read-only mapping of it (a plain ndarray: slicing a np.memmap
    costs Python time on every search).

    `randomly`: the rows are read a few at a time, at random (rescoring IVF candidates), so the
    kernel is told not to read ahead: on a cold page cache each row then costs one small read
    instead of a 128 KiB window (80 rows rescored at 100k: 182 ms cold before, 5.5 ms after).
    """
    with open(path, "rb") as file:
        version = np.lib.format.read_magic(file)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran_order, dtype = read_header(file)
        offset = file.tell()
        count = math.prod(shape)
        if fortran_order or len(shape) != 2 or os.fstat(file.fileno()).st_size < offset + count * dtype.itemsize:
            raise ValueError("not a complete C-ordered 2-d array")
        if count == 0:
            return np.zeros(shape, dtype=dtype)
        mapping = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)
    if randomly and hasattr(mmap, "MADV_RANDOM"):  # not on Windows
        mapping.madvise(mmap.MADV_RANDOM)
    return np.frombuffer(mapping, dtype=dtype, count=count, offset=offset).reshape(shape)


class _Segment:
    """One opened segment: ids in memory, vectors mapped, the IVF index loaded if it has one."""

    def __init__(self, directory: Path, entry: Segment, dims: int, dead: np.ndarray) -> None:
        where = directory / str(entry["name"])
        try:
            self.ids = np.load(where / "ids.npy")
            self.vectors = _map_vectors(where / "vectors.npy", randomly=bool(entry.get("ann")))
        except (OSError, ValueError) as exc:
            raise CorruptIndexError(f"{where}: unreadable vector segment: {exc}") from exc
        if self.vectors.ndim != 2 or len(self.ids) != len(self.vectors) or len(self.ids) != entry.get("rows"):
            raise CorruptIndexError(
                f"{where}: holds {len(self.ids)} ids and {self.vectors.shape[0] if self.vectors.ndim else 0} "
                f"vectors; the manifest says {entry.get('rows')}"
            )
        self.dims = int(self.vectors.shape[1])
        self.ann: Any = None
        if entry.get("ann"):
            try:
                self.ann = faiss.read_index(str(where / "ann.faiss"), _READ_FLAGS)
            except RuntimeError as exc:
                raise CorruptIndexError(f"{where}: unreadable FAISS index: {str(exc).splitlines()[-1]}") from exc
            self.ann.nprobe = _probes_for(int(self.ann.nlist), int(self.ann.ntotal))
        self.dead: np.ndarray | None = None
        if len(dead):
            mask = np.isin(self.ids, dead)
            if mask.any():
                self.dead = mask
        self.dead_count = int(self.dead.sum()) if self.dead is not None else 0

    def search(self, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores, row ids) of this segment's best live rows for one query, unsorted."""
        rows = len(self.ids)
        if self.ann is not None:
            wanted = min(rows, RERANK_FACTOR * k + self.dead_count)
            _, found = self.ann.search(query[None, :], wanted)
            positions = found[0][found[0] >= 0]
            positions.sort()  # mapped rows read in file order
            scores = np.asarray(self.vectors[positions]) @ query
        else:
            positions = None
            scores = np.asarray(self.vectors @ query, dtype=np.float32)
        if self.dead is not None:
            dead = self.dead[positions] if positions is not None else self.dead
            scores = np.where(dead, -np.inf, scores)
        take = min(k, len(scores))
        if take == 0:
            return np.zeros(0, np.float32), np.zeros(0, np.int64)
        top = np.argpartition(-scores, take - 1)[:take]
        top = top[np.isfinite(scores[top])]
        chosen = positions[top] if positions is not None else top
        return scores[top].astype(np.float32), self.ids[chosen]


class FaissDense:
    """A generation's segments opened for search (the `DenseIndex` of the FAISS backend)."""

    def __init__(self, directory: Path, segments: Sequence[Segment], dims: int, dead: np.ndarray) -> None:
        self.dims = dims
        self._segments = [_Segment(directory, entry, dims, dead) for entry in segments]
        for segment in self._segments:
            if segment.dims != dims:
                raise CorruptIndexError(
                    f"{directory}: holds {segment.dims}-dim vectors but the manifest says {dims}"
                )

    def count(self) -> int:
        return sum(len(s.ids) - s.dead_count for s in self._segments)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        array = np.ascontiguousarray(queries, dtype=np.float32)
        scores = np.full((len(array), k), -np.inf, dtype=np.float32)
        ids = np.full((len(array), k), -1, dtype=np.int64)
        for row, query in enumerate(array):
            parts = [segment.search(query, k) for segment in self._segments]
            if not parts:
                continue
            all_scores = np.concatenate([p[0] for p in parts])
            all_ids = np.concatenate([p[1] for p in parts])
            # Best first; ties broken by row id so results are deterministic.
            order = np.lexsort((all_ids, -all_scores))[:k]
            scores[row, : len(order)] = all_scores[order]
            ids[row, : len(order)] = all_ids[order]
        return scores, ids

    def reconstruct(self, ids: np.ndarray) -> np.ndarray:
        wanted = np.asarray(ids, dtype=np.int64).ravel()
        out = np.zeros((len(wanted), self.dims), dtype=np.float32)
        found = np.zeros(len(wanted), dtype=bool)
        for segment in self._segments:
            if not len(segment.ids):
                continue
            at = np.minimum(np.searchsorted(segment.ids, wanted), len(segment.ids) - 1)
            hit = (segment.ids[at] == wanted) & ~found
            if hit.any():
                out[hit] = segment.vectors[at[hit]]
                found |= hit
        if not found.all():
            raise CorruptIndexError(f"no stored vector for row id {int(wanted[~found][0])}")
        return out

    def close(self) -> None:
        # The mapped files and FAISS objects go with their last reference, so a search
        # still running in another thread finishes on them.
        pass


def new_segment_name(generation: int) -> str:
    """Segment names sort by generation; the random tail keeps a retried write apart."""
    return f"{generation:012d}-{secrets.token_hex(3)}"
