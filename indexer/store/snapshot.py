"""A snapshot's file format and reading it: Manifest, DocumentRecord, Snapshot."""

from __future__ import annotations

import json
import operator
import re
import sqlite3
import threading
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Mapping, Sequence

import numpy as np

from ..errors import CorruptIndexError, DimensionMismatchError, StoreError
from ..models import Chunk, ScoredChunk, Segment, segments_from_json
from .cache import translate_sqlite_error
from .backends import DenseIndex, dense_entry, load_milvus, resolve_uri
from .dense import FaissDense

FORMAT = 1
#: Snapshot directory names: creation time in ns, then a random tail.
SNAPSHOT_ID = re.compile(r"^[0-9]{20}-[0-9a-f]{8}$")
#: Most bound parameters in one statement; SQLite before 3.32 allows only 999.
_IN_BATCH = 900
#: The columns of the chunks table, in the order `_row_to_chunk` reads them.
CHUNK_COLUMNS = "id, chunk_id, doc_id, ordinal, text, start_char, end_char, tokens, title, headings, location"
#: Snapshots written before locations existed lack the `location` and `segments` columns;
#: they read as NULL (no location), so older indexes stay readable without a rebuild.
_LEGACY_CHUNK_COLUMNS = CHUNK_COLUMNS.replace(", location", ", NULL")
SCHEMA = """
CREATE TABLE documents (
    id INTEGER PRIMARY KEY, doc_id TEXT NOT NULL UNIQUE, source TEXT NOT NULL,
    content_hash TEXT NOT NULL, title TEXT NOT NULL, metadata TEXT NOT NULL, chunk_ids TEXT NOT NULL,
    text TEXT NOT NULL, segments TEXT
);
CREATE TABLE chunks (
    id INTEGER PRIMARY KEY, chunk_id TEXT NOT NULL UNIQUE, doc_id TEXT NOT NULL, ordinal INTEGER NOT NULL,
    text TEXT NOT NULL, start_char INTEGER NOT NULL, end_char INTEGER NOT NULL, tokens INTEGER NOT NULL,
    title TEXT NOT NULL, headings TEXT NOT NULL, location TEXT
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
    #: Where each part of `text` comes from (pages, slides, rows), for chunking it again.
    segments: tuple[Segment, ...] = ()


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
    #: Where the vectors are: `{"backend": "faiss"}` or `{"backend": "milvus", "uri", "collection"}`.
    dense: Mapping[str, Any] = field(default_factory=lambda: {"backend": "faiss"})

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
                   data["chunks"], data["created_at"], extra, dense_entry(data, where))



def _row_to_chunk(row: Sequence[Any]) -> Chunk:
    _, chunk_id, doc_id, ordinal, text, start, end, tokens, title, headings, location = row
    return Chunk(
        chunk_id, doc_id, ordinal, text, start, end, tokens, title, tuple(json.loads(headings)),
        json.loads(location) if location else None,
    )


@dataclass(frozen=True)
class DocumentSummary:
    """One row of a document listing: no text, no chunk ids."""

    doc_id: str
    title: str
    source: str
    chunks: int
    metadata: Mapping[str, Any]



class Snapshot:
    """A read-only view of one published snapshot.

    Safe to share between threads: SQLite reads go through one connection under
    a lock, FAISS searches run in parallel. Files deleted by a later writer's
    garbage collection stay readable while this object is open (POSIX); a
    Milvus collection does not, so a writer keeps the snapshot it replaced.
    """

    def __init__(self, path: Path, *, milvus_token: str | None = None) -> None:
        """Open and check a snapshot directory.

        Args:
            path: the snapshot directory.
            milvus_token: credentials for the Milvus server holding its vectors, if it needs them.

        Raises:
            CorruptIndexError: a file is missing, unreadable, or disagrees with the manifest.
            StoreError: the snapshot has a format this version cannot read.
        """
        self.path = Path(path)
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._index: DenseIndex | None = None
        self._milvus_token = milvus_token
        manifest_path = self.path / "manifest.json"
        try:
            data = json.loads(manifest_path.read_bytes())
        except FileNotFoundError as exc:
            raise CorruptIndexError(f"{self.path}: snapshot is missing its manifest.json") from exc
        except (OSError, ValueError) as exc:
            raise CorruptIndexError(f"{manifest_path}: unreadable manifest: {exc}") from exc
        self.manifest: Manifest = Manifest.from_json(data, manifest_path)
        files = data.get("files")
        faiss_backend = self.manifest.dense["backend"] == "faiss"
        for name in ("chunks.sqlite", "dense.faiss") if faiss_backend else ("chunks.sqlite",):
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
        db = self.path / "chunks.sqlite"
        if faiss_backend:
            # Checked before chunks.sqlite is opened, as it always was.
            self._index = self._load_dense(self.path / "dense.faiss")
        try:
            # immutable=1: the file never changes, so SQLite takes no locks and creates no side files.
            self._conn = sqlite3.connect(
                f"{db.resolve().as_uri()}?mode=ro&immutable=1", uri=True, check_same_thread=False
            )
            counts = self._conn.execute(
                "SELECT (SELECT count(*) FROM documents), (SELECT count(*) FROM chunks)"
            ).fetchone()
            has_locations = any(row[1] == "location" for row in self._conn.execute("PRAGMA table_info(chunks)"))
        except sqlite3.Error as exc:
            self.close()
            raise CorruptIndexError(f"{db}: unreadable: {exc}") from exc
        self._columns = CHUNK_COLUMNS if has_locations else _LEGACY_CHUNK_COLUMNS
        self._segments_column = "segments" if has_locations else "NULL"
        if tuple(counts) != (self.manifest.documents, self.manifest.chunks):
            self.close()
            raise CorruptIndexError(
                f"{db}: holds {counts[0]} documents and {counts[1]} chunks; the manifest says "
                f"{self.manifest.documents} and {self.manifest.chunks}"
            )
        if not faiss_backend:
            try:
                self._index = self._load_milvus()
            except BaseException:
                self.close()
                raise

    def _load_dense(self, file: Path) -> DenseIndex:
        return self._checked(FaissDense(file), str(file))

    def _load_milvus(self) -> DenseIndex:
        # The index root is two levels up (snapshots/<id>); a Lite file is stored relative to it.
        entry = self.manifest.dense
        uri = resolve_uri(entry["uri"], self.path.parent.parent)
        index = load_milvus().MilvusDense(uri, entry["collection"], index=entry.get("index"),
                                          token=self._milvus_token)
        return self._checked(index, f"Milvus collection {entry['collection']} at {uri}")

    def _checked(self, index: DenseIndex, where: str) -> DenseIndex:
        if index.dims != self.manifest.dims:
            index.close()
            raise CorruptIndexError(
                f"{where}: holds {index.dims}-dim vectors but the manifest says {self.manifest.dims} "
                f"({self.manifest.embedding_model})"
            )
        count = index.count()
        if count != self.manifest.chunks:
            index.close()
            raise CorruptIndexError(f"{where}: holds {count} vectors; the manifest says {self.manifest.chunks}")
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
            rows += self._query(f"SELECT {self._columns} FROM chunks WHERE {column} IN ({marks})", batch)
        return rows

    def documents(self) -> dict[str, DocumentRecord]:
        """Every document, by id, in the order they were published."""
        rows = self._query(
            "SELECT doc_id, source, content_hash, title, metadata, chunk_ids, text, "
            f"{self._segments_column} FROM documents ORDER BY id"
        )
        return {
            doc_id: DocumentRecord(
                doc_id, source, content_hash, title, json.loads(meta), tuple(json.loads(ids)), text,
                segments_from_json(segments),
            )
            for doc_id, source, content_hash, title, meta, ids, text, segments in rows
        }

    def list_documents(self, offset: int = 0, limit: int = 50) -> tuple[list[DocumentSummary], int]:
        """One page of documents in publishing order, and how many there are in all.

        Reads only the documents table, and not the document texts.
        """
        rows = self._query(
            "SELECT doc_id, title, source, chunk_ids, metadata FROM documents ORDER BY id LIMIT ? OFFSET ?",
            (limit, offset),
        )
        page = [
            DocumentSummary(doc_id, title, source, len(json.loads(ids)), json.loads(meta))
            for doc_id, title, source, ids, meta in rows
        ]
        return page, self.manifest.documents

    def chunks(self) -> list[Chunk]:
        """Every chunk, in (document, ordinal) order."""
        return [_row_to_chunk(row) for row in self._query(f"SELECT {self._columns} FROM chunks ORDER BY id")]

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
            raise CorruptIndexError(f"{self.path}: the dense index holds ids that chunks.sqlite does not")
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
        return self._index.reconstruct(keys)

    def close(self) -> None:
        """Release the files; closing twice is fine."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
            if self._index is not None:
                self._index.close()
                self._index = None

    def __enter__(self) -> Snapshot:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
