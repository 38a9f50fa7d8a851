"""The dense-backend interface: where a snapshot's vectors are written, searched and dropped."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Mapping, Protocol, Sequence

import numpy as np

#: One entry of a manifest's segment list: {"name", "rows", ...backend facts}.
Segment = Mapping[str, Any]


class DenseIndex(Protocol):
    """A generation's vectors opened for search; ids are the chunks' row ids (int64)."""

    dims: int

    def count(self) -> int:
        """How many live vectors the index holds (rows known deleted are not counted)."""
        ...

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k by inner product: (scores float32 (n, k), ids int64 (n, k)); id -1 pads.

        Rows deleted at the opened generation are never returned; a backend that
        cannot tell (Milvus) may return rows the caller filters out.
        """
        ...

    def reconstruct(self, ids: np.ndarray) -> np.ndarray:
        """The stored vectors of these ids, float32 (len(ids), dims), in the order given."""
        ...

    def close(self) -> None:
        """Release the index; closing twice is fine."""
        ...


class DenseBackend(ABC):
    """A kind of vector storage. Writers call `create` once per snapshot and `add` per write;
    `merge` rewrites what writes left behind; readers call `open` with the generation's segments.

    Every method that writes makes its result durable before it returns, so CURRENT
    may name it right after.
    """

    #: The name in a manifest's `dense` entry.
    name: str = ""
    #: Whether `count()` of an opened index equals the generation's live chunks exactly.
    exact_count: bool = True

    @abstractmethod
    def create(self, snapshot_dir: Path, snapshot_id: str, dims: int) -> dict[str, Any]:
        """Prepare storage for a new snapshot; returns the manifest's `dense` entry."""

    @abstractmethod
    def add(
        self, snapshot_dir: Path, entry: Mapping[str, Any], segments: Sequence[Segment], name: str,
        ids: np.ndarray, vectors: np.ndarray,
    ) -> list[dict[str, Any]]:
        """Store new vectors under these row ids; returns the new segment list."""

    @abstractmethod
    def merge(
        self, source_dir: Path, source: Mapping[str, Any], segments: Sequence[Segment],
        target_dir: Path, target: Mapping[str, Any], name: str, dead: np.ndarray,
    ) -> list[dict[str, Any]]:
        """Rewrite `segments` of the source snapshot as one segment of the target (which may be the
        same snapshot), without the `dead` row ids; returns the merged segment(s)."""

    def discard(self, snapshot_dir: Path, entry: Mapping[str, Any], ids: np.ndarray) -> None:  # noqa: B027 - a hook: a no-op unless the backend needs it
        """Forget rows of a write that was never published (their ids are never used again)."""

    @abstractmethod
    def open(
        self, snapshot_dir: Path, entry: Mapping[str, Any], segments: Sequence[Segment], dims: int,
        dead: np.ndarray,
    ) -> DenseIndex:
        """Open a generation's vectors for search; `dead` are row ids deleted by then."""

    def verify(self, snapshot_dir: Path, segments: Sequence[Segment]) -> None:  # noqa: B027 - a hook: a no-op unless the backend needs it
        """Cheap check that a generation's files are there (for writers, who do not open them)."""

    def collect(self, snapshot_dir: Path, keep: set[str]) -> None:  # noqa: B027 - a hook: a no-op unless the backend needs it
        """Remove segment files no kept manifest lists (best effort)."""

    def drop(self, snapshot_dir: Path, entry: Mapping[str, Any]) -> bool:
        """Release storage kept outside the snapshot directory; False if that failed."""
        return True
