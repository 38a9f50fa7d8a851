"""The index on disk: immutable snapshots (SQLite metadata + FAISS vectors) switched atomically.

Layout under the index root:

    cache.sqlite          embedding cache (`indexer.cache`)
    write.lock            one writer at a time
    CURRENT               {"format": 1, "snapshot": "<id>"}, replaced atomically
    snapshots/<id>/       immutable once published:
        manifest.json     model, dims, counts, file sizes, caller's extras
        chunks.sqlite     documents and chunks tables
        dense.faiss       IndexIDMap2(IndexFlatIP(dims)); ids are chunks.id
    snapshots/.tmp-<id>/  a snapshot being built; never read, removed by the next publish

A snapshot is built in its `.tmp-` directory with every file fsynced, renamed
into place, and only then named by CURRENT. A crash at any moment leaves
CURRENT naming the last complete snapshot.
"""

from __future__ import annotations

import json
import operator
import os
import re
import secrets
import shutil
import sqlite3
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType
from typing import Any, Iterator, Mapping, Sequence

import filelock
import numpy as np

try:
    import faiss  # type: ignore[import-untyped]
except ImportError as exc:  # pragma: no cover - faiss-cpu is a core dependency
    raise ImportError("faiss is not available - install faiss-cpu (pip install faiss-cpu)") from exc

from .cache import EmbeddingCache, translate_sqlite_error
from .errors import CorruptIndexError, DimensionMismatchError, IndexLockedError, IndexNotFoundError, StoreError
from .models import Chunk, ScoredChunk

__all__ = ["DocumentRecord", "EmbeddingCache", "IndexDirectory", "IndexWriter", "Manifest", "Snapshot"]

FORMAT = 1
_SNAPSHOT_ID = re.compile(r"^[0-9]{20}-[0-9a-f]{8}$")
_TMP_PREFIX = ".tmp-"
_IN_BATCH = 900
_CHUNK_COLUMNS = "id, chunk_id, doc_id, ordinal, text, start_char, end_char, tokens, title, headings"
_SCHEMA = """
CREATE TABLE documents (
    id INTEGER PRIMARY KEY, doc_id TEXT NOT NULL UNIQUE, source TEXT NOT NULL,
    content_hash TEXT NOT NULL, title TEXT NOT NULL, metadata TEXT NOT NULL, chunk_ids TEXT NOT NULL,
    text TEXT NOT NULL
);
CREATE TABLE chunks (
    id INTEGER PRIMARY KEY, chunk_id TEXT NOT NULL UNIQUE, doc_id TEXT NOT NULL, ordinal INTEGER NOT NULL,
    text TEXT NOT NULL, start_char INTEGER NOT NULL, end_char INTEGER NOT NULL, tokens INTEGER NOT NULL,
    title TEXT NOT NULL, headings TEXT NOT NULL
);
"""


@dataclass(frozen=True)
class DocumentRecord:
    """What the index keeps about one document; `chunk_ids` in ordinal order.

    `text` is the whole document text, kept so a document can be chunked again
    (new chunking settings or model) when its source is gone, e.g. one added over HTTP.
    """

    doc_id: str
    source: str
    content_hash: str
    title: str
    metadata: Mapping[str, Any]
    chunk_ids: tuple[str, ...]
    text: str = ""


@dataclass(frozen=True)
class Manifest:
    """The description of one published snapshot (`manifest.json`)."""

    format: int
    snapshot: str
    embedding_model: str
    dims: int
    documents: int
    chunks: int
    created_at: str
    #: Whatever the writer passed as `extra` to `publish` (chunking settings, ...).
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: Any, where: Path) -> Manifest:
        """Parse and check a manifest's JSON object.

        Raises:
            CorruptIndexError: a field is missing or has the wrong type.
            StoreError: a format this version cannot read.
        """
        if not isinstance(data, dict):
            raise CorruptIndexError(f"{where}: manifest is not a JSON object")
        if data.get("format") != FORMAT:
            raise StoreError(
                f"{where}: snapshot format {data.get('format')!r} is not readable by this version "
                f"(expects {FORMAT})",
                hint="upgrade iorag or index again",
            )
        kinds = {
            "snapshot": str, "embedding_model": str, "dims": int, "documents": int, "chunks": int, "created_at": str
        }
        for key, kind in kinds.items():
            if not isinstance(data.get(key), kind) or isinstance(data.get(key), bool):
                raise CorruptIndexError(
                    f"{where}: manifest field {key!r} is missing or not of type {kind.__name__}"
                )
        extra = data.get("extra", {})
        if not isinstance(extra, dict):
            raise CorruptIndexError(f"{where}: manifest field 'extra' is not an object")
        return cls(FORMAT, data["snapshot"], data["embedding_model"], data["dims"], data["documents"],
                   data["chunks"], data["created_at"], extra)


# -- durable file operations ------------------------------------------------------


def _fsync_path(path: Path, *, directory: bool = False) -> None:
    flags = os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if directory else 0)
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    except OSError:
        # Some filesystems refuse fsync on directories (EINVAL); the rename is still atomic there.
        if not directory:
            raise
    finally:
        os.close(fd)


def _write_durably(path: Path, data: bytes) -> None:
    with open(path, "xb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _remove_tree(path: Path) -> None:
    """Delete a directory tree, ignoring what is already gone (a reader may hold files open; POSIX allows it)."""
    shutil.rmtree(path, ignore_errors=True)


def _new_snapshot_id() -> str:
    # Sortable by creation time; the random tail keeps two writers on two machines apart.
    return f"{time.time_ns():020d}-{secrets.token_hex(4)}"


# -- building a snapshot ------------------------------------------------------------


def _write_chunks_db(path: Path, documents: Sequence[DocumentRecord], chunks: Sequence[Chunk]) -> None:
    """Write chunks.sqlite in one transaction; chunk row ids are 1..n in the order given."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        # A half-written file here is thrown away with its .tmp directory, so no journal is
        # needed; durability comes from the explicit fsync after close.
        conn.execute("PRAGMA journal_mode = OFF")
        conn.execute("PRAGMA synchronous = OFF")
        conn.executescript(_SCHEMA)
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO documents (id, doc_id, source, content_hash, title, metadata, chunk_ids, text)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (i, d.doc_id, d.source, d.content_hash, d.title, _dump_metadata(d), json.dumps(list(d.chunk_ids)),
                 d.text)
                for i, d in enumerate(documents, start=1)
            ],
        )
        conn.executemany(
            f"INSERT INTO chunks ({_CHUNK_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (i, c.chunk_id, c.doc_id, c.ordinal, c.text, c.start, c.end, c.tokens, c.title,
                 json.dumps(list(c.headings)))
                for i, c in enumerate(chunks, start=1)
            ],
        )
        conn.execute("COMMIT")
    finally:
        conn.close()
    _fsync_path(path)


def _dump_metadata(record: DocumentRecord) -> str:
    try:
        return json.dumps(dict(record.metadata), sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise StoreError(f"document {record.doc_id!r}: metadata is not JSON-serializable: {exc}") from exc


def _write_dense(path: Path, vectors: np.ndarray, dims: int) -> None:
    """Write dense.faiss: vector row i gets id i + 1, the chunk's row id in chunks.sqlite."""
    index = faiss.IndexIDMap2(faiss.IndexFlatIP(dims))
    if len(vectors):
        index.add_with_ids(vectors, np.arange(1, len(vectors) + 1, dtype=np.int64))
    faiss.write_index(index, str(path))
    _fsync_path(path)


def _check_publish_input(
    dims: int, documents: Sequence[DocumentRecord], chunks: Sequence[Chunk], vectors: np.ndarray
) -> tuple[list[Chunk], np.ndarray]:
    """Validate publish's arguments; return chunks and vectors in (document, ordinal) order."""
    if isinstance(dims, bool) or dims < 1:
        raise DimensionMismatchError(f"dims must be positive, got {dims}")
    array = np.asarray(vectors)
    if array.ndim != 2 or array.shape[1] != dims:
        raise DimensionMismatchError(f"vectors have shape {array.shape}; expected (n, {dims})")
    if array.shape[0] != len(chunks):
        raise StoreError(f"{array.shape[0]} vectors for {len(chunks)} chunks; expected one row per chunk")
    array = np.ascontiguousarray(array, dtype=np.float32)
    if not np.isfinite(array).all():
        raise StoreError("vectors contain NaN or infinity")
    position: dict[str, int] = {}
    for i, record in enumerate(documents):
        if record.doc_id in position:
            raise StoreError(f"document id {record.doc_id!r} appears twice")
        position[record.doc_id] = i
    seen: set[str] = set()
    by_doc: dict[str, list[tuple[int, int]]] = {}
    for i, chunk in enumerate(chunks):
        if chunk.chunk_id in seen:
            raise StoreError(f"chunk id {chunk.chunk_id!r} appears twice")
        seen.add(chunk.chunk_id)
        if chunk.doc_id not in position:
            raise StoreError(
                f"chunk {chunk.chunk_id!r} belongs to document {chunk.doc_id!r}, which is not published"
            )
        by_doc.setdefault(chunk.doc_id, []).append((chunk.ordinal, i))
    order: list[int] = []
    for record in documents:
        members = [i for _, i in sorted(by_doc.get(record.doc_id, []))]
        ids = tuple(chunks[i].chunk_id for i in members)
        if ids != tuple(record.chunk_ids):
            raise StoreError(
                f"document {record.doc_id!r} lists chunk ids {list(record.chunk_ids)} "
                f"but its chunks, by ordinal, are {list(ids)}"[:500]
            )
        order.extend(members)
    if order == list(range(len(chunks))):
        return list(chunks), array
    return [chunks[i] for i in order], array[order]


def _write_current(root: Path, snapshot_id: str) -> None:
    """Point CURRENT at a snapshot: temp file in the same directory, fsync, rename, fsync the directory."""
    tmp = root / f"CURRENT.tmp-{secrets.token_hex(4)}"
    _write_durably(tmp, json.dumps({"format": FORMAT, "snapshot": snapshot_id}).encode())
    os.replace(tmp, root / "CURRENT")
    _fsync_path(root, directory=True)


def _row_to_chunk(row: Sequence[Any]) -> Chunk:
    _, chunk_id, doc_id, ordinal, text, start, end, tokens, title, headings = row
    return Chunk(chunk_id, doc_id, ordinal, text, start, end, tokens, title, tuple(json.loads(headings)))


# -- reading a snapshot ---------------------------------------------------------------


class Snapshot:
    """A read-only view of one published snapshot.

    Safe to share between threads: SQLite reads go through one connection under
    a lock, FAISS searches run in parallel. Files deleted by a later writer's
    garbage collection stay readable while this object is open (POSIX).
    """

    def __init__(self, path: Path) -> None:
        """Open and check a snapshot directory.

        Raises:
            CorruptIndexError: a file is missing, unreadable, or disagrees with the manifest.
            StoreError: the snapshot has a format this version cannot read.
        """
        self.path = Path(path)
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._index: Any = None
        manifest_path = self.path / "manifest.json"
        try:
            data = json.loads(manifest_path.read_bytes())
        except FileNotFoundError as exc:
            raise CorruptIndexError(f"{self.path}: snapshot is missing its manifest.json") from exc
        except (OSError, ValueError) as exc:
            raise CorruptIndexError(f"{manifest_path}: unreadable manifest: {exc}") from exc
        self.manifest: Manifest = Manifest.from_json(data, manifest_path)
        files = data.get("files")
        for name in ("chunks.sqlite", "dense.faiss"):
            file = self.path / name
            try:
                size = file.stat().st_size
            except OSError as exc:
                raise CorruptIndexError(f"{self.path}: snapshot is missing {name}") from exc
            # Sizes catch truncation cheaply; hashing gigabytes on every open would not be cheap.
            entry = files.get(name) if isinstance(files, dict) else None
            expected = entry.get("bytes") if isinstance(entry, dict) else None
            if expected is not None and size != expected:
                raise CorruptIndexError(f"{file}: {size} bytes, the manifest says {expected}")
        self._index = self._load_dense(self.path / "dense.faiss")
        db = self.path / "chunks.sqlite"
        try:
            # immutable=1: the file never changes, so SQLite takes no locks and creates no side files.
            self._conn = sqlite3.connect(
                f"{db.resolve().as_uri()}?mode=ro&immutable=1", uri=True, check_same_thread=False
            )
            counts = self._conn.execute(
                "SELECT (SELECT count(*) FROM documents), (SELECT count(*) FROM chunks)"
            ).fetchone()
        except sqlite3.Error as exc:
            self.close()
            raise CorruptIndexError(f"{db}: unreadable: {exc}") from exc
        if tuple(counts) != (self.manifest.documents, self.manifest.chunks):
            self.close()
            raise CorruptIndexError(
                f"{db}: holds {counts[0]} documents and {counts[1]} chunks; the manifest says "
                f"{self.manifest.documents} and {self.manifest.chunks}"
            )

    def _load_dense(self, file: Path) -> Any:
        try:
            index = faiss.read_index(str(file))
        except RuntimeError as exc:
            raise CorruptIndexError(f"{file}: unreadable FAISS index: {str(exc).splitlines()[-1]}") from exc
        if index.d != self.manifest.dims:
            raise CorruptIndexError(
                f"{file}: holds {index.d}-dim vectors but the manifest says {self.manifest.dims} "
                f"({self.manifest.embedding_model})"
            )
        if index.ntotal != self.manifest.chunks:
            raise CorruptIndexError(
                f"{file}: holds {index.ntotal} vectors; the manifest says {self.manifest.chunks}"
            )
        return index

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        with self._lock:
            if self._conn is None:
                raise StoreError(f"{self.path}: snapshot is closed")
            try:
                return self._conn.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise translate_sqlite_error(exc, self.path / "chunks.sqlite", "read chunks") from exc

    def _rows_where_in(self, column: str, values: Sequence[Any]) -> list[Any]:
        rows: list[Any] = []
        for start in range(0, len(values), _IN_BATCH):
            batch = values[start : start + _IN_BATCH]
            marks = ",".join("?" * len(batch))
            rows += self._query(f"SELECT {_CHUNK_COLUMNS} FROM chunks WHERE {column} IN ({marks})", batch)
        return rows

    def documents(self) -> dict[str, DocumentRecord]:
        """Every document, by id, in the order they were published."""
        rows = self._query(
            "SELECT doc_id, source, content_hash, title, metadata, chunk_ids, text FROM documents ORDER BY id"
        )
        return {
            doc_id: DocumentRecord(
                doc_id, source, content_hash, title, json.loads(meta), tuple(json.loads(ids)), text
            )
            for doc_id, source, content_hash, title, meta, ids, text in rows
        }

    def chunks(self) -> list[Chunk]:
        """Every chunk, in (document, ordinal) order."""
        return [_row_to_chunk(row) for row in self._query(f"SELECT {_CHUNK_COLUMNS} FROM chunks ORDER BY id")]

    def get_chunks(self, chunk_ids: Sequence[str]) -> list[Chunk]:
        """The chunks with these ids, in the order asked.

        Raises:
            StoreError: an id this snapshot does not hold (the message names it).
        """
        rows = self._rows_where_in("chunk_id", list(dict.fromkeys(chunk_ids)))
        found = {row[1]: _row_to_chunk(row) for row in rows}
        for chunk_id in chunk_ids:
            if chunk_id not in found:
                raise StoreError(f"chunk {chunk_id!r} is not in snapshot {self.manifest.snapshot}")
        return [found[chunk_id] for chunk_id in chunk_ids]

    def search(self, queries: np.ndarray, k: int) -> list[list[ScoredChunk]]:
        """Nearest chunks by inner product.

        Args:
            queries: float32 unit vectors, shape (n, dims) (a single (dims,) vector is taken as n = 1).
            k: results wanted per query; more than the index holds is fine.

        Returns:
            One list per query, best score first, at most `k` long.

        Raises:
            DimensionMismatchError: the queries' dimension is not the snapshot's.
        """
        array = np.asarray(queries, dtype=np.float32)
        if array.ndim == 1:
            array = array[None, :]
        if array.ndim != 2 or array.shape[1] != self.manifest.dims:
            raise DimensionMismatchError(
                f"query vectors have shape {tuple(np.shape(queries))} but the index was built with "
                f"{self.manifest.embedding_model} ({self.manifest.dims} dims)",
                hint="search with the model the index was built with, or index again",
            )
        k = operator.index(k)  # SWIG rejects numpy integers
        if k < 0:
            raise ValueError(f"k must not be negative, got {k}")
        take = min(k, self.manifest.chunks)
        if take == 0 or len(array) == 0:
            return [[] for _ in range(len(array))]
        index = self._index
        if index is None:
            raise StoreError(f"{self.path}: snapshot is closed")
        scores, ids = index.search(np.ascontiguousarray(array), take)
        wanted = sorted({int(i) for i in ids.ravel() if i >= 0})
        by_row = {row[0]: _row_to_chunk(row) for row in self._rows_where_in("id", wanted)}
        if len(by_row) != len(wanted):
            raise CorruptIndexError(f"{self.path}: dense.faiss holds ids that chunks.sqlite does not")
        return [
            [ScoredChunk(by_row[int(i)], float(s)) for s, i in zip(score_row, id_row) if i >= 0]
            for score_row, id_row in zip(scores, ids)
        ]

    def vectors_for(self, chunk_ids: Sequence[str]) -> np.ndarray:
        """The stored vectors of these chunks, shape (len(chunk_ids), dims), in the order asked.

        Raises:
            StoreError: an id this snapshot does not hold.
        """
        rows = {row[1]: row[0] for row in self._rows_where_in("chunk_id", list(dict.fromkeys(chunk_ids)))}
        missing = [c for c in chunk_ids if c not in rows]
        if missing:
            raise StoreError(f"chunk {missing[0]!r} is not in snapshot {self.manifest.snapshot}")
        if self._index is None:
            raise StoreError(f"{self.path}: snapshot is closed")
        if not chunk_ids:
            return np.zeros((0, self.manifest.dims), dtype=np.float32)
        keys = np.array([rows[c] for c in chunk_ids], dtype=np.int64)
        return np.asarray(self._index.reconstruct_batch(keys), dtype=np.float32)

    def close(self) -> None:
        """Release the files; closing twice is fine."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
            self._index = None

    def __enter__(self) -> Snapshot:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


# -- the directory and its writer ----------------------------------------------------------


class IndexDirectory:
    """One index root on disk. Creates nothing until a writer opens it."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

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
        if not isinstance(snapshot, str) or not _SNAPSHOT_ID.match(snapshot):
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
                return Snapshot(self.snapshots_dir / snapshot_id)
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


class IndexWriter:
    """Publishes snapshots; exists only inside `IndexDirectory.writer()`, which holds the lock."""

    def __init__(self, directory: IndexDirectory, cache: EmbeddingCache) -> None:
        self.directory = directory
        self.cache = cache
        self._closed = False

    def _close(self) -> None:
        self._closed = True

    def publish(
        self,
        *,
        embedding_model: str,
        dims: int,
        documents: Sequence[DocumentRecord],
        chunks: Sequence[Chunk],
        vectors: np.ndarray,
        extra: Mapping[str, Any] | None = None,
    ) -> Manifest:
        """Write a complete snapshot and make it the current one.

        Chunks are stored in (document order, ordinal) order whatever order they come in.
        Afterwards only this snapshot and the one it replaced are kept.

        Args:
            embedding_model: the model the vectors come from.
            dims: the vectors' dimension.
            documents: every document of the new index, in order; each lists its chunk ids by ordinal.
            chunks: every chunk; each belongs to one of `documents`.
            vectors: float32, shape (len(chunks), dims); row i belongs to chunks[i].
            extra: JSON-serializable facts kept in the manifest (chunking settings, ...).

        Returns:
            The new snapshot's manifest.

        Raises:
            DimensionMismatchError: vectors are not (n, dims).
            StoreError: inconsistent input (names the id) or a failed write.
        """
        if self._closed:
            raise StoreError(f"{self.directory.root}: this writer is closed")
        if not embedding_model:
            raise StoreError("embedding_model must not be empty")
        dims = operator.index(dims)  # a numpy integer would not survive json.dumps
        ordered, array = _check_publish_input(dims, documents, chunks, vectors)
        try:
            extra_json = json.loads(json.dumps(dict(extra or {})))
        except (TypeError, ValueError) as exc:
            raise StoreError(f"publish extra is not JSON-serializable: {exc}") from exc
        root, snapshots = self.directory.root, self.directory.snapshots_dir
        try:
            previous: str | None = self.directory.current_id()
        except CorruptIndexError:
            # CURRENT is damaged: keep the newest snapshot as the fallback instead.
            names = [p.name for p in snapshots.iterdir()] if snapshots.is_dir() else []
            previous = max(filter(_SNAPSHOT_ID.match, names), default=None)
        snapshot_id = _new_snapshot_id()
        tmp = snapshots / f"{_TMP_PREFIX}{snapshot_id}"
        manifest = Manifest(FORMAT, snapshot_id, embedding_model, dims, len(documents), len(ordered),
                            datetime.now(timezone.utc).isoformat(timespec="milliseconds"), extra_json)
        try:
            if not snapshots.is_dir():
                snapshots.mkdir()
                _fsync_path(root, directory=True)
            tmp.mkdir()
            _write_chunks_db(tmp / "chunks.sqlite", documents, ordered)
            _write_dense(tmp / "dense.faiss", array, dims)
            _write_manifest(tmp, manifest, previous)
            _fsync_path(tmp, directory=True)
            os.rename(tmp, snapshots / snapshot_id)
            _fsync_path(snapshots, directory=True)
            _write_current(root, snapshot_id)
        except (OSError, sqlite3.Error) as exc:
            _remove_tree(tmp)
            raise StoreError(f"cannot write snapshot {snapshot_id} in {snapshots}: {exc}") from exc
        except UnicodeEncodeError as exc:
            _remove_tree(tmp)
            raise StoreError(f"{_unencodable(documents, ordered)} is not valid Unicode: {exc}") from exc
        except BaseException:
            _remove_tree(tmp)
            raise
        self._collect_garbage(keep={snapshot_id, previous} if previous else {snapshot_id})
        return manifest

    def _collect_garbage(self, keep: set[str]) -> None:
        """Delete unfinished builds and every snapshot but `keep` (safe: we hold the lock).

        Best effort: the snapshot is already published, and the next publish tries again.
        """
        try:
            for entry in self.directory.snapshots_dir.iterdir():
                unfinished = entry.name.startswith(_TMP_PREFIX)
                if unfinished or (_SNAPSHOT_ID.match(entry.name) and entry.name not in keep):
                    _remove_tree(entry)
            for entry in self.directory.root.glob("CURRENT.tmp-*"):
                entry.unlink(missing_ok=True)
        except OSError:
            pass


def _unencodable(documents: Sequence[DocumentRecord], chunks: Sequence[Chunk]) -> str:
    """Name the first document or chunk whose text SQLite cannot store (unpaired surrogates)."""
    for chunk in chunks:
        for value in (chunk.chunk_id, chunk.doc_id, chunk.text, chunk.title):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                return f"chunk {chunk.chunk_id!r}"
    for record in documents:
        for value in (record.doc_id, record.source, record.content_hash, record.title, record.text):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                return f"document {record.doc_id!r}"
    return "some text"


def _write_manifest(directory: Path, manifest: Manifest, previous: str | None) -> None:
    data = {
        "format": manifest.format,
        "snapshot": manifest.snapshot,
        "embedding_model": manifest.embedding_model,
        "dims": manifest.dims,
        "documents": manifest.documents,
        "chunks": manifest.chunks,
        "created_at": manifest.created_at,
        "previous": previous,
        "index": {"type": "IndexIDMap2(IndexFlatIP)", "metric": "inner_product", "ids": "chunks.id"},
        "files": {name: {"bytes": (directory / name).stat().st_size} for name in ("chunks.sqlite", "dense.faiss")},
        "extra": dict(manifest.extra),
    }
    _write_durably(directory / "manifest.json", json.dumps(data, indent=2, sort_keys=True).encode())
