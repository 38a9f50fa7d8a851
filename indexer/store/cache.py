"""Embedding cache: vectors keyed by (model, text hash) in one SQLite file, shared by all models."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from types import TracebackType
from typing import Iterator, Sequence

import numpy as np

from ..errors import CorruptIndexError, StoreError

#: Most bound parameters in one statement; SQLite before 3.32 allows only 999.
_IN_BATCH = 900

_SCHEMA = """
CREATE TABLE IF NOT EXISTS embeddings (
    model     TEXT NOT NULL,
    text_hash TEXT NOT NULL,
    vector    BLOB NOT NULL,
    PRIMARY KEY (model, text_hash)
)
"""


def translate_sqlite_error(exc: sqlite3.Error, path: Path, doing: str) -> StoreError:
    """Map a sqlite3 error to the most specific `StoreError`, naming the file.

    Args:
        exc: what sqlite3 raised.
        path: the database file involved.
        doing: a few words on the operation, for the message.

    Returns:
        The error to raise (`raise translate_sqlite_error(...) from exc`).
    """
    text = str(exc)
    if isinstance(exc, sqlite3.DatabaseError) and (
        "not a database" in text or "malformed" in text or "corrupt" in text
    ):
        return CorruptIndexError(f"{path}: cannot {doing}: {text}", hint="delete the file and index again")
    if "locked" in text or "busy" in text:
        return StoreError(f"{path}: cannot {doing}: the database stayed busy ({text})")
    return StoreError(f"{path}: cannot {doing}: {text}")


def _batches(items: Sequence[str], size: int = _IN_BATCH) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _unique(items: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(items))


class EmbeddingCache:
    """Vectors already paid for, so an unchanged chunk is never embedded twice.

    One row per (model, text hash); the vector is stored as little-endian
    float32 bytes. The file is in WAL mode with `synchronous=FULL`: every
    `put_many` is one transaction, durable (even across a power cut) when it
    returns, and readers in other processes never block on it.

    The file is created on the first `put_many` (or when a writer opens the
    index); until then reads behave as an empty cache, so a dry run on a new
    index creates nothing. One object may be shared by threads.

    A model that can return several sizes (the API's `dimensions`) must be
    cached under a key that includes the size, e.g. `"model@512"`.
    """

    def __init__(self, path: Path) -> None:
        """Args:
        path: the SQLite file (`<index>/cache.sqlite`); need not exist yet.
        """
        self.path = Path(path)
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._closed = False

    # -- connection ---------------------------------------------------------

    def _connect(self, *, create: bool) -> sqlite3.Connection | None:
        """The open connection, opening it first; None when the file is absent and `create` is False.

        Call with `self._lock` held.
        """
        if self._closed:
            raise StoreError(f"{self.path}: the embedding cache is closed")
        if self._conn is not None:
            return self._conn
        if not create and not self.path.exists():
            return None
        try:
            if create:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            # Autocommit mode: transactions are opened explicitly, so a batch is exactly one.
            conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
            try:
                conn.execute("PRAGMA busy_timeout = 30000")
                if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                    conn.execute("PRAGMA journal_mode = WAL")
                # FULL: the WAL is fsynced at each commit, so a batch is on disk when put_many returns.
                conn.execute("PRAGMA synchronous = FULL")
                conn.execute(_SCHEMA)
            except BaseException:
                conn.close()
                raise
        except sqlite3.Error as exc:
            raise translate_sqlite_error(exc, self.path, "open the embedding cache") from exc
        except OSError as exc:
            raise StoreError(f"{self.path}: cannot open the embedding cache: {exc}") from exc
        self._conn = conn
        return conn

    def ensure(self) -> None:
        """Create the file and its table now (a writer does this when it opens the index)."""
        with self._lock:
            self._connect(create=True)

    # -- reads --------------------------------------------------------------

    def get_many(self, model: str, text_hashes: Sequence[str]) -> dict[str, np.ndarray]:
        """Vectors cached for `model`, for the hashes that have one.

        Args:
            model: the embedding model id (the cache key's first half).
            text_hashes: hashes to look up; any length, duplicates allowed.

        Returns:
            `{text_hash: float32 vector}` for the hashes present only.
        """
        found: dict[str, np.ndarray] = {}
        with self._lock:
            conn = self._connect(create=False)
            if conn is None:
                return found
            try:
                for batch in _batches(_unique(text_hashes)):
                    marks = ",".join("?" * len(batch))
                    rows = conn.execute(
                        f"SELECT text_hash, vector FROM embeddings WHERE model = ? AND text_hash IN ({marks})",
                        (model, *batch),
                    ).fetchall()
                    for text_hash, blob in rows:
                        if len(blob) % 4:
                            raise CorruptIndexError(f"{self.path}: vector for {model} {text_hash} is truncated")
                        found[text_hash] = np.frombuffer(blob, dtype="<f4").astype(np.float32)
            except sqlite3.Error as exc:
                raise translate_sqlite_error(exc, self.path, "read the embedding cache") from exc
        return found

    def missing(self, model: str, text_hashes: Sequence[str]) -> list[str]:
        """Hashes that have no vector for `model` yet.

        Returns:
            Those hashes in their first-seen order, each once.
        """
        wanted = _unique(text_hashes)
        present: set[str] = set()
        with self._lock:
            conn = self._connect(create=False)
            if conn is None:
                return wanted
            try:
                for batch in _batches(wanted):
                    marks = ",".join("?" * len(batch))
                    rows = conn.execute(
                        f"SELECT text_hash FROM embeddings WHERE model = ? AND text_hash IN ({marks})",
                        (model, *batch),
                    )
                    present.update(row[0] for row in rows)
            except sqlite3.Error as exc:
                raise translate_sqlite_error(exc, self.path, "read the embedding cache") from exc
        return [h for h in wanted if h not in present]

    def count(self, model: str | None = None) -> int:
        """Number of cached vectors, for one model or all."""
        with self._lock:
            conn = self._connect(create=False)
            if conn is None:
                return 0
            try:
                if model is None:
                    row = conn.execute("SELECT count(*) FROM embeddings").fetchone()
                else:
                    row = conn.execute("SELECT count(*) FROM embeddings WHERE model = ?", (model,)).fetchone()
            except sqlite3.Error as exc:
                raise translate_sqlite_error(exc, self.path, "read the embedding cache") from exc
        return int(row[0])

    # -- writes -------------------------------------------------------------

    def put_many(self, model: str, items: Sequence[tuple[str, np.ndarray]]) -> None:
        """Store a batch of vectors in one transaction; on return the batch is on disk.

        A hash already cached for `model` keeps its first vector (INSERT OR IGNORE),
        including a hash repeated inside `items`.

        Args:
            model: the embedding model id.
            items: `(text_hash, vector)` pairs; each vector 1-D and finite.

        Raises:
            StoreError: a vector that is not 1-D and finite, or the write failed.
        """
        rows: list[tuple[str, str, bytes]] = []
        for text_hash, vector in items:
            array = np.asarray(vector, dtype="<f4")
            if array.ndim != 1 or array.size == 0 or not np.isfinite(array).all():
                raise StoreError(f"embedding for {model} {text_hash} must be a non-empty 1-D finite vector")
            rows.append((model, text_hash, array.tobytes()))
        if not rows:
            return
        with self._lock:
            conn = self._connect(create=True)
            assert conn is not None
            try:
                # IMMEDIATE takes the write lock up front, so a busy database is waited
                # for by the busy timeout instead of failing at the first insert.
                conn.execute("BEGIN IMMEDIATE")
                try:
                    conn.executemany(
                        "INSERT OR IGNORE INTO embeddings (model, text_hash, vector) VALUES (?, ?, ?)", rows
                    )
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                raise translate_sqlite_error(exc, self.path, "write the embedding cache") from exc

    # -- lifetime -----------------------------------------------------------

    def close(self) -> None:
        """Close the file; later calls raise `StoreError`. Closing twice is fine."""
        with self._lock:
            self._closed = True
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> EmbeddingCache:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
