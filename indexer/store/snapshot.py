"""The index format and reading it: Manifest, DocumentRecord, Snapshot (one generation, opened).

A snapshot is one SQLite file plus its vector and lexical segments. Writes do not copy it: each adds
rows stamped with a new generation number and stamps the rows it replaces or
removes as deleted at that generation (tombstones). A reader opened at
generation g sees exactly the rows with `added <= g` and not `deleted <= g`, so
it sees one published state whatever writers do meanwhile.
"""

from __future__ import annotations

import json
import math
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
from ..lexical import Terms
from ..models import Chunk, ScoredChunk, Segment, segments_from_json
from .backends import dense_entry
from .cache import translate_sqlite_error
from .dense import DenseIndex, make_backend
from .postings import Postings, term_keys

FORMAT = 3
#: Snapshot directory names: creation time in ns, then a random tail.
SNAPSHOT_ID = re.compile(r"^[0-9]{20}-[0-9a-f]{8}$")
DB_NAME = "chunks.sqlite"
#: Most bound parameters in one statement; SQLite before 3.32 allows only 999.
_IN_BATCH = 900
#: The columns of the chunks table, in the order `_row_to_chunk` reads them.
CHUNK_COLUMNS = "id, chunk_id, doc_id, ordinal, text, start_char, end_char, tokens, title, headings, location"
DOCUMENT_COLUMNS = "doc_id, source, content_hash, title, metadata, chunk_ids, text, segments"
#: Rows visible at generation ? (bound twice).
VISIBLE = "added <= ? AND (deleted IS NULL OR deleted > ?)"
SCHEMA = """
CREATE TABLE documents (
    id INTEGER PRIMARY KEY AUTOINCREMENT, doc_id TEXT NOT NULL, source TEXT NOT NULL,
    content_hash TEXT NOT NULL, title TEXT NOT NULL, metadata TEXT NOT NULL, chunk_ids TEXT NOT NULL,
    text TEXT NOT NULL, segments TEXT, added INTEGER NOT NULL, deleted INTEGER
);
CREATE INDEX documents_by_doc ON documents (doc_id);
CREATE INDEX documents_by_added ON documents (added);
CREATE INDEX documents_by_deleted ON documents (deleted) WHERE deleted IS NOT NULL;
CREATE TABLE chunks (
    id INTEGER PRIMARY KEY AUTOINCREMENT, chunk_id TEXT NOT NULL, doc_id TEXT NOT NULL, ordinal INTEGER NOT NULL,
    text TEXT NOT NULL, start_char INTEGER NOT NULL, end_char INTEGER NOT NULL, tokens INTEGER NOT NULL,
    title TEXT NOT NULL, headings TEXT NOT NULL, location TEXT, added INTEGER NOT NULL, deleted INTEGER
);
CREATE INDEX chunks_by_chunk ON chunks (chunk_id);
CREATE INDEX chunks_by_doc ON chunks (doc_id);
CREATE INDEX chunks_by_added ON chunks (added);
CREATE INDEX chunks_by_deleted ON chunks (deleted) WHERE deleted IS NOT NULL;
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
class DocumentSummary:
    """One row of a document listing: no text, no chunk ids."""

    doc_id: str
    title: str
    source: str
    chunks: int
    metadata: Mapping[str, Any]


@dataclass(frozen=True)
class DocumentEntry:
    """The cheap listing of one document: enough to tell what a directory scan changed."""

    doc_id: str
    source: str
    content_hash: str


@dataclass(frozen=True)
class Manifest:
    """One published generation of the index (the content of CURRENT)."""

    format: int
    #: The snapshot (SQLite file and vectors) this generation lives in.
    snapshot: str
    embedding_model: str
    dims: int
    documents: int
    chunks: int
    created_at: str
    #: Whatever the writer passed as `extra` (chunking settings, ...).
    extra: Mapping[str, Any] = field(default_factory=dict)
    #: Where the vectors are: `{"backend": "faiss"}` or `{"backend": "milvus", "uri", "collection"}`.
    dense: Mapping[str, Any] = field(default_factory=lambda: {"backend": "faiss"})
    #: Writes published into this snapshot so far; 1 for a fresh one.
    generation: int = 1
    #: Vector segments (FAISS): [{"name", "rows", "ann"}], oldest first.
    segments: tuple[Mapping[str, Any], ...] = ()
    #: Chunk rows kept only as tombstones (what compaction would reclaim).
    dead: int = 0
    #: Lexical (BM25 postings) segments: [{"name", "rows", "terms", "postings"}], oldest first.
    lexical: tuple[Mapping[str, Any], ...] = ()

    @property
    def version(self) -> str:
        """Changes with every publish: snapshot and generation."""
        return f"{self.snapshot}/{self.generation}"

    def to_json(self) -> dict[str, Any]:
        return {
            "format": self.format, "snapshot": self.snapshot, "generation": self.generation,
            "embedding_model": self.embedding_model, "dims": self.dims, "documents": self.documents,
            "chunks": self.chunks, "dead": self.dead, "created_at": self.created_at,
            "segments": [dict(s) for s in self.segments], "lexical": [dict(s) for s in self.lexical],
            "dense": dict(self.dense), "extra": dict(self.extra),
        }

    @classmethod
    def from_json(cls, data: Any, where: Path) -> Manifest:
        """Parse and check a manifest's JSON object.

        Raises:
            CorruptIndexError: a field is missing or has the wrong type.
            StoreError: a format this version cannot read (names how to rebuild).
        """
        if not isinstance(data, dict):
            raise CorruptIndexError(f"{where}: manifest is not a JSON object")
        if data.get("format") != FORMAT:
            raise StoreError(
                f"{where.parent}: index format {data.get('format')!r} is not readable by this version "
                f"(expects {FORMAT}); rebuild it",
                hint=f"delete {where} and {where.parent / 'snapshots'}, then run `iorag index` again "
                "(cached embeddings are reused; documents added over HTTP must be added again)",
            )
        kinds = {
            "snapshot": str, "embedding_model": str, "dims": int, "documents": int, "chunks": int,
            "created_at": str, "generation": int, "dead": int,
        }
        for key, kind in kinds.items():
            if not isinstance(data.get(key), kind) or isinstance(data.get(key), bool):
                raise CorruptIndexError(
                    f"{where}: manifest field {key!r} is missing or not of type {kind.__name__}"
                )
        if not SNAPSHOT_ID.match(data["snapshot"]):
            raise CorruptIndexError(f"{where}: does not name a snapshot")
        extra = data.get("extra", {})
        if not isinstance(extra, dict):
            raise CorruptIndexError(f"{where}: manifest field 'extra' is not an object")
        segments, lexical = data.get("segments", []), data.get("lexical", [])
        for key, value in (("segments", segments), ("lexical", lexical)):
            if not isinstance(value, list) or not all(
                isinstance(s, dict) and isinstance(s.get("name"), str) and isinstance(s.get("rows"), int) for s in value
            ):
                raise CorruptIndexError(f"{where}: manifest field {key!r} is not a list of segments")
        return cls(FORMAT, data["snapshot"], data["embedding_model"], data["dims"], data["documents"],
                   data["chunks"], data["created_at"], extra, dense_entry(data, where), data["generation"],
                   tuple(segments), data["dead"], tuple(lexical))


def row_to_chunk(row: Sequence[Any]) -> Chunk:
    _, chunk_id, doc_id, ordinal, text, start, end, tokens, title, headings, location = row
    return Chunk(chunk_id, doc_id, ordinal, text, start, end, tokens, title, tuple(json.loads(headings)),
                 json.loads(location) if location else None)


def connect_read_only(db: Path) -> sqlite3.Connection:
    """A read-only connection that never blocks on a writer (WAL) and is shared by threads."""
    conn = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True, check_same_thread=False)
    conn.execute("PRAGMA query_only = 1")
    return conn


class Snapshot:
    """A read-only view of one published generation.

    Safe to share between threads: SQLite reads go through one connection under
    a lock; vector and BM25 searches run in parallel over mapped segments. Only
    the hits' rows are read from SQLite; nothing loads every chunk to serve a query.
    """

    def __init__(
        self, root: Path, manifest: Manifest, *, dense: bool = True, milvus_token: str | None = None
    ) -> None:
        """Open a generation of the index rooted at `root`.

        Args:
            dense: open the vectors too; writers that only look documents up skip them.
            milvus_token: credentials for the Milvus server holding the vectors, if it needs them.

        Raises:
            CorruptIndexError: a file is missing, unreadable, or disagrees with the manifest.
        """
        self.root = Path(root)
        self.manifest = manifest
        self.path = self.root / "snapshots" / manifest.snapshot
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._index: DenseIndex | None = None
        self._postings: Postings | None = None
        self._terms: Terms | None = None
        g = manifest.generation
        db = self.path / DB_NAME
        if not db.is_file():
            raise CorruptIndexError(f"{self.path}: snapshot is missing {DB_NAME}")
        try:
            self._conn = connect_read_only(db)
            # Rows deleted by this generation: the vector index masks them out.
            dead = np.fromiter(
                (r[0] for r in self._conn.execute(
                    "SELECT id FROM chunks WHERE deleted IS NOT NULL AND deleted <= ?", (g,)
                )),
                dtype=np.int64,
            )
        except sqlite3.Error as exc:
            self.close()
            raise CorruptIndexError(f"{db}: unreadable: {exc}") from exc
        self.dead_rows = len(dead)
        self._dead = dead
        self._closed = False
        self._backend = make_backend(manifest.dense, milvus_token=milvus_token)
        if not dense:
            # Writers that only look documents up open the postings if they search, not before:
            # masking tombstones costs a pass over every row id.
            self._backend.verify(self.path, manifest.segments)
            return
        try:
            self._postings = Postings(self.path, manifest.lexical, dead)
            self._index = self._backend.open(self.path, manifest.dense, manifest.segments, manifest.dims, dead)
            if self._index.dims != manifest.dims:
                raise CorruptIndexError(
                    f"{self.path}: holds {self._index.dims}-dim vectors but the manifest says {manifest.dims} "
                    f"({manifest.embedding_model})"
                )
            if self._backend.exact_count and self._index.count() != manifest.chunks:
                raise CorruptIndexError(
                    f"{self.path}: holds {self._index.count()} live vectors; the manifest says {manifest.chunks}"
                )
        except BaseException:
            self.close()
            raise

    # -- SQLite -------------------------------------------------------------------

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        with self._lock:
            if self._conn is None:
                raise StoreError(f"{self.path}: snapshot is closed")
            try:
                return self._conn.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise translate_sqlite_error(exc, self.path / DB_NAME, "read chunks") from exc

    def _visible(self) -> tuple[int, int]:
        return (self.manifest.generation, self.manifest.generation)

    def _where_in(self, table: str, columns: str, column: str, values: Sequence[Any]) -> list[Any]:
        rows: list[Any] = []
        for start in range(0, len(values), _IN_BATCH):
            batch = list(values[start : start + _IN_BATCH])
            marks = ",".join("?" * len(batch))
            rows += self._query(
                f"SELECT {columns} FROM {table} WHERE {column} IN ({marks}) AND {VISIBLE}", [*batch, *self._visible()]
            )
        return rows

    def listing(self) -> list[DocumentEntry]:
        """Every document's id, source and content hash (no texts), in id order."""
        rows = self._query(f"SELECT doc_id, source, content_hash FROM documents WHERE {VISIBLE} ORDER BY id",
                           self._visible())
        return [DocumentEntry(*row) for row in rows]

    def entries(self, doc_ids: Sequence[str]) -> dict[str, DocumentEntry]:
        """The listing of these documents (those indexed), by id."""
        rows = self._where_in("documents", "doc_id, source, content_hash", "doc_id", list(dict.fromkeys(doc_ids)))
        return {row[0]: DocumentEntry(*row) for row in rows}

    def documents(self, doc_ids: Sequence[str] | None = None) -> dict[str, DocumentRecord]:
        """The documents with these ids (all of them if None), by id."""
        if doc_ids is None:
            rows = self._query(f"SELECT {DOCUMENT_COLUMNS} FROM documents WHERE {VISIBLE} ORDER BY id",
                               self._visible())
        else:
            rows = sorted(self._where_in("documents", DOCUMENT_COLUMNS, "doc_id", list(dict.fromkeys(doc_ids))))
        return {
            doc_id: DocumentRecord(doc_id, source, content_hash, title, json.loads(meta), tuple(json.loads(ids)), text,
                                   segments_from_json(segments))
            for doc_id, source, content_hash, title, meta, ids, text, segments in rows
        }

    def list_documents(self, offset: int = 0, limit: int = 50) -> tuple[list[DocumentSummary], int]:
        """One page of documents in publishing order, and how many there are in all.

        Reads only the documents table, and not the document texts.
        """
        rows = self._query(
            f"SELECT doc_id, title, source, chunk_ids, metadata FROM documents WHERE {VISIBLE} "
            "ORDER BY id LIMIT ? OFFSET ?",
            (*self._visible(), limit, offset),
        )
        page = [
            DocumentSummary(doc_id, title, source, len(json.loads(ids)), json.loads(meta))
            for doc_id, title, source, ids, meta in rows
        ]
        return page, self.manifest.documents

    def chunks(self, doc_ids: Sequence[str] | None = None) -> list[Chunk]:
        """The chunks of these documents (every chunk if None), in (document, ordinal) order."""
        if doc_ids is None:
            rows = self._query(f"SELECT {CHUNK_COLUMNS} FROM chunks WHERE {VISIBLE} ORDER BY id", self._visible())
        else:
            rows = sorted(self._where_in("chunks", CHUNK_COLUMNS, "doc_id", list(dict.fromkeys(doc_ids))))
        return [row_to_chunk(row) for row in rows]

    def chunk_count(self, doc_ids: Sequence[str]) -> int:
        """How many chunks these documents have."""
        return sum(self.chunk_counts(doc_ids).values())

    def chunk_counts(self, doc_ids: Sequence[str]) -> dict[str, int]:
        """How many chunks each of these documents has (documents not indexed are absent)."""
        counts: dict[str, int] = {}
        for (doc_id,) in self._where_in("chunks", "doc_id", "doc_id", list(dict.fromkeys(doc_ids))):
            counts[doc_id] = counts.get(doc_id, 0) + 1
        return counts

    def get_chunks(self, chunk_ids: Sequence[str]) -> list[Chunk]:
        """The chunks with these ids, in the order asked.

        Raises:
            StoreError: an id this generation does not hold (the message names it).
        """
        rows = self._where_in("chunks", CHUNK_COLUMNS, "chunk_id", list(dict.fromkeys(chunk_ids)))
        found = {row[1]: row_to_chunk(row) for row in rows}
        for chunk_id in chunk_ids:
            if chunk_id not in found:
                raise StoreError(f"chunk {chunk_id!r} is not in snapshot {self.manifest.snapshot}")
        return [found[chunk_id] for chunk_id in chunk_ids]

    def rows(self, row_ids: Sequence[int]) -> dict[int, Chunk]:
        """The visible chunks with these row ids (ids of rows not visible here are left out)."""
        return {row[0]: row_to_chunk(row) for row in self._where_in("chunks", CHUNK_COLUMNS, "id", list(row_ids))}

    def scored_chunks(self, *ranked: Sequence[tuple[int, float]]) -> list[list[ScoredChunk]]:
        """The chunks of ranked (row id, score) lists, in their order, read in one query.

        Raises:
            CorruptIndexError: a list names a row this generation does not hold (a search index
                out of step with the chunk table).
        """
        found = self.rows(sorted({i for hits in ranked for i, _ in hits}))
        if any(i not in found for hits in ranked for i, _ in hits):
            raise CorruptIndexError(f"{self.path}: the search index holds ids that {DB_NAME} does not")
        return [[ScoredChunk(found[i], score) for i, score in hits] for hits in ranked]

    def visible_rows(self, row_ids: Sequence[int]) -> set[int]:
        """Which of these row ids this generation shows (no text is read)."""
        return {row[0] for row in self._where_in("chunks", "id", "id", list(row_ids))}

    # -- dense --------------------------------------------------------------------

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
        return self.scored_chunks(*self._dense_rows(self._query_array(queries), k))

    def dense_search(self, vector: np.ndarray, k: int) -> list[tuple[int, float]]:
        """(row id, score) of the `k` visible chunks nearest to one query vector, best first.

        Reads no chunk: a caller that fuses or cuts the list fetches the rows it keeps (`rows`).
        """
        return self._dense_rows(self._query_array(vector), k)[0]

    def _query_array(self, queries: np.ndarray) -> np.ndarray:
        array = np.asarray(queries, dtype=np.float32)
        if array.ndim == 1:
            array = array[None, :]
        if array.ndim != 2 or array.shape[1] != self.manifest.dims:
            raise DimensionMismatchError(
                f"query vectors have shape {tuple(np.shape(queries))} but the index was built with "
                f"{self.manifest.embedding_model} ({self.manifest.dims} dims)",
                hint="search with the model the index was built with, or index again",
            )
        return array

    def _dense_rows(self, array: np.ndarray, k: int) -> list[list[tuple[int, float]]]:
        k = operator.index(k)
        if k < 0:
            raise ValueError(f"k must not be negative, got {k}")
        take = min(k, self.manifest.chunks)
        if take <= 0 or len(array) == 0:
            return [[] for _ in range(len(array))]
        index = self._index
        if index is None:
            raise StoreError(f"{self.path}: snapshot is closed")
        if self._backend.exact_count:
            # The backend masks tombstones and holds no row of a later generation: every id is visible.
            scores, ids = index.search(np.ascontiguousarray(array), take)
            return [[(int(i), float(s)) for s, i in zip(score_row, id_row) if i >= 0]
                    for score_row, id_row in zip(scores, ids)]
        # A backend that cannot mask deletions (Milvus) is asked for more, and again for more if short.
        want = take + self.dead_rows
        while True:
            scores, ids = index.search(np.ascontiguousarray(array), want)
            visible = self.visible_rows(sorted({int(i) for i in ids.ravel() if i >= 0}))
            results = [
                [(int(i), float(s)) for s, i in zip(score_row, id_row) if int(i) in visible][:take]
                for score_row, id_row in zip(scores, ids)
            ]
            short = any(len(r) < take and (id_row >= 0).sum() >= want for r, id_row in zip(results, ids))
            if not short or want >= 16_384:
                return results
            want *= 2

    def vectors_for(self, chunk_ids: Sequence[str]) -> np.ndarray:
        """The stored vectors of these chunks, shape (len(chunk_ids), dims), in the order asked.

        Raises:
            StoreError: an id this generation does not hold.
        """
        rows = {row[1]: row[0] for row in self._where_in("chunks", "id, chunk_id", "chunk_id",
                                                         list(dict.fromkeys(chunk_ids)))}
        missing = [c for c in chunk_ids if c not in rows]
        if missing:
            raise StoreError(f"chunk {missing[0]!r} is not in snapshot {self.manifest.snapshot}")
        if not chunk_ids:
            return np.zeros((0, self.manifest.dims), dtype=np.float32)
        index = self._index
        if index is None:
            raise StoreError(f"{self.path}: snapshot is closed")
        return index.reconstruct(np.array([rows[c] for c in chunk_ids], dtype=np.int64))

    # -- lexical ------------------------------------------------------------------

    def lexical_search(self, query: str, k: int) -> list[tuple[int, float]]:
        """BM25 over the stored terms: (row id, score) of the best `k` visible chunks, best first.

        Reads no chunk: postings list only this generation's rows and mask its tombstones.
        """
        if k < 1:
            return []
        ids, scores = self._opened_postings().search(self._query_terms().of([query])[0], k)
        return [(int(i), float(s)) for i, s in zip(ids, scores)]

    def term_rarity(self, word: str) -> float:
        """BM25's idf of a word's term, log(1 + (N - df + 0.5) / (df + 0.5)); 0.0 if no chunk holds it."""
        term = self._query_terms().stem(word)
        postings = self._opened_postings()
        if not term or not postings.rows:
            return 0.0
        df = int(postings.frequencies(term_keys([term]))[0])
        return math.log(1.0 + (postings.rows - df + 0.5) / (df + 0.5)) if df else 0.0

    def _query_terms(self) -> Terms:
        if self._terms is None:
            self._terms = Terms()
        return self._terms

    def _opened_postings(self) -> Postings:
        with self._lock:
            if self._closed:
                raise StoreError(f"{self.path}: snapshot is closed")
            if self._postings is None:
                self._postings = Postings(self.path, self.manifest.lexical, self._dead)
            return self._postings

    def lexical(self) -> LexicalView:
        """The lexical index of this generation, searched by query text."""
        return LexicalView(self)

    # -- lifetime -------------------------------------------------------------------

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
        if self._index is not None:
            self._index.close()
            self._index = None
        self._postings = None
        self._closed = True

    def __enter__(self) -> Snapshot:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class LexicalView:
    """A generation's BM25 index: `search(query, k)` -> scored chunks (hits read from disk only)."""

    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot

    def __len__(self) -> int:
        return self.snapshot.manifest.chunks

    def rarity(self, word: str) -> float:
        """How rare `word` is among the chunks: BM25's idf of its term; 0.0 for a word no chunk holds."""
        return self.snapshot.term_rarity(word)

    def search(self, query: str, k: int) -> list[ScoredChunk]:
        """Chunks that share terms with `query`, best first; chunks scoring 0 are left out."""
        return self.snapshot.scored_chunks([(i, s) for i, s in self.snapshot.lexical_search(query, k) if s > 0])[0]
