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
