"""Dense (vector) backends: one interface (`base`), one file per backend (`faiss`, `milvus`), a `factory`."""

from __future__ import annotations

from .base import DenseBackend, DenseIndex, Segment
from .factory import load_milvus, make_backend

__all__ = ["DenseBackend", "DenseIndex", "Segment", "load_milvus", "make_backend"]
