"""Row ids of a snapshot's SQLite file, for backends that copy vectors by id."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np

DB_NAME = "chunks.sqlite"


def live_ids(snapshot_dir: Path) -> np.ndarray:
    """Ids of the chunk rows not deleted in a snapshot (a freshly compacted one holds only those)."""
    conn = sqlite3.connect(f"{(snapshot_dir / DB_NAME).resolve().as_uri()}?mode=ro", uri=True)
    try:
        return np.fromiter((r[0] for r in conn.execute("SELECT id FROM chunks WHERE deleted IS NULL ORDER BY id")),
                           dtype=np.int64)
    finally:
        conn.close()
