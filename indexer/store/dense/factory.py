"""Choosing a dense backend by name: FAISS (built in) or Milvus (optional extra, imported on use)."""

from __future__ import annotations

import importlib
from typing import Any, Mapping

from ...errors import ConfigError
from .base import DenseBackend
from .faiss import ANN_MIN_ROWS, FaissBackend


def load_milvus() -> Any:
    """Import the Milvus backend module (and pymilvus) on first use.

    Raises:
        ConfigError: pymilvus or milvus-lite is not installed.
    """
    try:
        # import_module, not `from . import`: it honours sys.modules, so tests can hide the extra.
        return importlib.import_module(f"{__package__}.milvus")
    except ImportError as exc:
        raise ConfigError(
            f"the Milvus vector backend is not available: {exc}", hint="install iorag[milvus]"
        ) from exc


def make_backend(
    entry: Mapping[str, Any], *, ann_min_rows: int = ANN_MIN_ROWS, milvus_token: str | None = None
) -> DenseBackend:
    """The backend a manifest's `dense` entry (or a writer's choice) names.

    Args:
        entry: `{"backend": "faiss"}` or `{"backend": "milvus", "uri": stored URI, ...}`.
        ann_min_rows: FAISS segments of at least this many rows get an approximate index.
        milvus_token: a Milvus server's credentials (never stored).

    Raises:
        ConfigError: Milvus asked for but not installed, or an unknown backend.
    """
    if entry.get("backend") == "milvus":
        return load_milvus().MilvusBackend(  # type: ignore[no-any-return]
            str(entry.get("uri") or "milvus.db"), milvus_token
        )
    if entry.get("backend") == "faiss":
        return FaissBackend(ann_min_rows)
    raise ConfigError(f"unknown vector backend {entry.get('backend')!r}", hint="use faiss or milvus")
