"""dense.faiss, a snapshot's vectors in a FAISS index; the only module that imports faiss."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

try:
    import faiss  # type: ignore[import-untyped]
except ImportError as exc:  # pragma: no cover - faiss-cpu is a core dependency
    raise ImportError("faiss is not available - install faiss-cpu (pip install faiss-cpu)") from exc

from ..errors import CorruptIndexError
from .durable import fsync_path


def write_dense(path: Path, vectors: np.ndarray, dims: int) -> None:
    """Write dense.faiss: vector row i gets id i + 1, the chunk's row id in chunks.sqlite."""
    index = faiss.IndexIDMap2(faiss.IndexFlatIP(dims))
    if len(vectors):
        index.add_with_ids(vectors, np.arange(1, len(vectors) + 1, dtype=np.int64))
    faiss.write_index(index, str(path))
    fsync_path(path)


def read_dense(file: Path) -> Any:
    """Load a dense.faiss file.

    Raises:
        CorruptIndexError: FAISS cannot read the file.
    """
    try:
        return faiss.read_index(str(file))
    except RuntimeError as exc:
        raise CorruptIndexError(f"{file}: unreadable FAISS index: {str(exc).splitlines()[-1]}") from exc


class FaissDense:
    """A snapshot's dense.faiss, opened for search (the `DenseIndex` of the FAISS backend)."""

    def __init__(self, file: Path) -> None:
        """Load the file.

        Raises:
            CorruptIndexError: FAISS cannot read it.
        """
        self._index: Any = read_dense(file)
        self.dims: int = int(self._index.d)

    def count(self) -> int:
        return int(self._index.ntotal)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact inner-product search: (scores, ids), each (n, k); id -1 pads missing hits."""
        scores, ids = self._index.search(np.ascontiguousarray(queries, dtype=np.float32), k)
        return scores, ids

    def reconstruct(self, ids: np.ndarray) -> np.ndarray:
        """The stored vectors of these ids, in the order given."""
        return np.asarray(self._index.reconstruct_batch(np.asarray(ids, dtype=np.int64)), dtype=np.float32)

    def close(self) -> None:
        # Nothing to release early: the FAISS object goes with its last reference, so a
        # search still running in another thread finishes on it.
        pass
