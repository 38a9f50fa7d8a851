"""One index root on disk: CURRENT, the write lock, opening the published snapshot."""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import filelock

from ..errors import CorruptIndexError, IndexLockedError, IndexNotFoundError, StoreError
from .cache import EmbeddingCache
from .snapshot import SNAPSHOT_ID, Snapshot
from .writer import IndexWriter


class IndexDirectory:
    """One index root on disk. Creates nothing until a writer opens it.

    Args:
        root: the index directory.
        milvus_token: credentials for a Milvus server its snapshots use (`user:password` or an
            API key); held here, never written to disk.
    """

    def __init__(self, root: Path, *, milvus_token: str | None = None) -> None:
        self.root = Path(root)
        self.milvus_token = milvus_token

    @property
    def snapshots_dir(self) -> Path:
        return self.root / "snapshots"

    def exists(self) -> bool:
        """Whether a snapshot has been published here (CURRENT exists)."""
        return (self.root / "CURRENT").is_file()

    def current_id(self) -> str | None:
        """The published snapshot's id, read from CURRENT; None before the first publish.

        Cheap enough to poll. Raises CorruptIndexError if CURRENT cannot be parsed.
        """
        file = self.root / "CURRENT"
        try:
            data = json.loads(file.read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise CorruptIndexError(f"{file}: unreadable: {exc}") from exc
        snapshot = data.get("snapshot") if isinstance(data, dict) else None
        if not isinstance(snapshot, str) or not SNAPSHOT_ID.match(snapshot):
            raise CorruptIndexError(f"{file}: does not name a snapshot")
        return snapshot

    def open_current(self) -> Snapshot:
        """Open the published snapshot.

        Raises:
            IndexNotFoundError: nothing has been published here.
            CorruptIndexError: the snapshot's files cannot be read.
        """
        for _ in range(5):
            snapshot_id = self.current_id()
            if snapshot_id is None:
                raise IndexNotFoundError(f"no index at {self.root}")
            try:
                return Snapshot(self.snapshots_dir / snapshot_id, milvus_token=self.milvus_token)
            except CorruptIndexError as exc:
                # A writer may have published twice since CURRENT was read and collected this
                # snapshot; only a CURRENT that still names it means the files are really bad.
                if self.current_id() == snapshot_id:
                    # Indexing opens the current snapshot too, so without this the user is stuck.
                    exc.hint = exc.hint or (
                        f"to rebuild, delete {self.root / 'CURRENT'} and index your sources again: "
                        "vectors in cache.sqlite are reused, documents added over HTTP must be added again"
                    )
                    raise
        raise StoreError(f"{self.root}: the index kept changing while it was being opened; try again")

    @contextmanager
    def writer(self, timeout: float = 0) -> Iterator[IndexWriter]:
        """Take the write lock and open a writer (creates the root and the cache).

        Args:
            timeout: seconds to wait for another writer; 0 tries once.

        Raises:
            IndexLockedError: another writer (any process) holds the lock.
        """
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the index directory {self.root}: {exc}") from exc
        lock = filelock.FileLock(self.root / "write.lock", timeout=timeout, thread_local=False)
        try:
            lock.acquire()
        except filelock.Timeout as exc:
            raise IndexLockedError(f"the index at {self.root} is locked by another writer") from exc
        except OSError as exc:
            raise StoreError(f"cannot take the write lock of {self.root}: {exc}") from exc
        try:
            cache = EmbeddingCache(self.root / "cache.sqlite")
            try:
                cache.ensure()
                writer = IndexWriter(self, cache)
                try:
                    yield writer
                finally:
                    writer._close()
            finally:
                cache.close()
        finally:
            lock.release()

    def cache(self) -> EmbeddingCache:
        """The embedding cache, for reading without the lock (dry runs); the caller closes it."""
        return EmbeddingCache(self.root / "cache.sqlite")
