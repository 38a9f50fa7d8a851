"""One index root on disk: CURRENT, the write lock, opening the published generation."""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import filelock

from ..errors import CorruptIndexError, IndexLockedError, IndexNotFoundError, StoreError
from .cache import EmbeddingCache
from .dense.faiss import ANN_MIN_ROWS
from .snapshot import Manifest, Snapshot
from .writer import IndexWriter, drop_collections_outside


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
        """Whether an index has been published here (CURRENT exists)."""
        return (self.root / "CURRENT").is_file()

    def _read_current(self) -> dict[str, Any] | None:
        file = self.root / "CURRENT"
        try:
            data = json.loads(file.read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise CorruptIndexError(f"{file}: unreadable: {exc}") from exc
        if not isinstance(data, dict):
            raise CorruptIndexError(f"{file}: does not name a snapshot")
        return data

    def current_manifest(self) -> Manifest | None:
        """The published generation's manifest, read from CURRENT; None before the first publish.

        Raises:
            CorruptIndexError: CURRENT cannot be parsed.
            StoreError: an index format this version cannot read (says how to rebuild).
        """
        data = self._read_current()
        return None if data is None else Manifest.from_json(data, self.root / "CURRENT")

    def current_id(self) -> str | None:
        """The published snapshot's id; None before the first publish. Cheap enough to poll."""
        manifest = self.current_manifest()
        return manifest.snapshot if manifest else None

    def current_version(self) -> str | None:
        """Changes with every publish (snapshot and generation); None before the first one."""
        manifest = self.current_manifest()
        return manifest.version if manifest else None

    def drop_external_storage(self) -> list[str]:
        """Drop the Milvus collections this index keeps outside its directory (on a server, or in a
        Lite file elsewhere), before the directory itself is deleted; returns those that failed."""
        try:
            snapshots = list(self.snapshots_dir.iterdir())
        except OSError:
            return []
        return [failed for path in snapshots if (failed := drop_collections_outside(path, self.root, self.milvus_token))]

    def previous_segments(self, kind: str = "segments") -> set[str]:
        """Segment names (vector `segments` or `lexical`) of the generation CURRENT replaced, kept for
        readers still on it."""
        data = self._read_current() or {}
        previous = data.get("previous")
        if isinstance(previous, dict) and previous.get("snapshot") == data.get("snapshot"):
            return {str(s) for s in previous.get(kind, [])}
        return set()

    def open_current(self, *, dense: bool = True) -> Snapshot:
        """Open the published generation (without its vectors if not `dense`).

        Raises:
            IndexNotFoundError: nothing has been published here.
            CorruptIndexError: the snapshot's files cannot be read.
        """
        for _ in range(5):
            manifest = self.current_manifest()
            if manifest is None:
                raise IndexNotFoundError(f"no index at {self.root}")
            try:
                return Snapshot(self.root, manifest, dense=dense, milvus_token=self.milvus_token)
            except CorruptIndexError as exc:
                # A writer may have compacted since CURRENT was read and collected these files;
                # only a CURRENT that still names them means the files are really bad.
                if self.current_version() == manifest.version:
                    exc.hint = exc.hint or (
                        f"to rebuild, delete {self.root / 'CURRENT'} and index your sources again: "
                        "vectors in cache.sqlite are reused, documents added over HTTP must be added again"
                    )
                    raise
        raise StoreError(f"{self.root}: the index kept changing while it was being opened; try again")

    @contextmanager
    def writer(
        self, timeout: float = 0, *, ann_min_rows: int = ANN_MIN_ROWS, holder: str = "another indexing run"
    ) -> Iterator[IndexWriter]:
        """Take the write lock and open a writer (creates the root and the cache).

        Args:
            timeout: seconds to wait for another writer; 0 tries once.
            ann_min_rows: vector segments of at least this many rows get an approximate index.
            holder: who this writer is, as a refused writer is told (`write.owner` holds it).

        Raises:
            IndexLockedError: another writer (any process) holds the lock; names that writer.
        """
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the index directory {self.root}: {exc}") from exc
        lock = filelock.FileLock(self.root / "write.lock", timeout=timeout, thread_local=False)
        try:
            lock.acquire()
        except filelock.Timeout as exc:
            raise self._locked_error() from exc
        except OSError as exc:
            raise StoreError(f"cannot take the write lock of {self.root}: {exc}") from exc
        owner = self.root / "write.owner"
        try:
            # Beside the lock file, which filelock truncates on every attempt to take it.
            owner.write_text(json.dumps({"pid": os.getpid(), "holder": holder}), encoding="utf-8")
        except OSError:
            pass  # only the message of a refused writer depends on it
        try:
            cache = EmbeddingCache(self.root / "cache.sqlite")
            try:
                cache.ensure()
                writer = IndexWriter(self, cache, ann_min_rows)
                try:
                    yield writer
                finally:
                    writer._close()
            finally:
                cache.close()
        finally:
            owner.unlink(missing_ok=True)
            lock.release()

    def _locked_error(self) -> IndexLockedError:
        try:
            owner = json.loads((self.root / "write.owner").read_text(encoding="utf-8"))
            holder, pid = str(owner["holder"]), int(owner["pid"])
        except (OSError, ValueError, KeyError, TypeError):
            return IndexLockedError(f"the index at {self.root} is locked by another writer")
        error = IndexLockedError(f"the index at {self.root} is locked by another writer: {holder} (pid {pid})")
        if "server" in holder:
            error.hint = "a write over HTTP is in progress; retry in a few seconds"
        return error

    def cache(self) -> EmbeddingCache:
        """The embedding cache, for reading without the lock (dry runs); the caller closes it."""
        return EmbeddingCache(self.root / "cache.sqlite")
