"""Writing the index: a full publish (a new snapshot), an update (a new generation), compaction.

A full publish builds a snapshot in `snapshots/.tmp-<id>/`, renames it into place
and points CURRENT at it. An update writes into the current snapshot without
copying it: one SQLite transaction adds the new rows and tombstones the replaced
ones under the next generation number, the new vectors and BM25 postings go to
new segments, and only then CURRENT names that generation. A crash before CURRENT flips leaves
rows no reader sees (their generation is not published); the next writer deletes
them. Compaction is a full publish of what is live, copied by SQLite and the
dense backend without going through Python objects.
"""

from __future__ import annotations

import json
import operator
import os
import secrets
import sqlite3
import time
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import numpy as np

from ..errors import CorruptIndexError, DimensionMismatchError, IoragError, StoreError
from ..lexical import Terms
from ..models import Chunk, segments_json
from .backends import DENSE_MARKER, DenseTarget, dense_entry, is_local, load_milvus, resolve_uri, collection_name
from .cache import EmbeddingCache
from . import postings
from .dense import make_backend
from .dense.faiss import ANN_MIN_ROWS, new_segment_name
from .durable import fsync_path, remove_tree, write_durably
from .snapshot import (
    CHUNK_COLUMNS, DB_NAME, FORMAT, SCHEMA, SNAPSHOT_ID, VISIBLE, DocumentRecord, Manifest,
)

if TYPE_CHECKING:
    from .directory import IndexDirectory

_TMP_PREFIX = ".tmp-"
#: More segments than this and the small ones (all but the first) are merged into one.
MAX_SEGMENTS = 8
#: Compact automatically once tombstones are this share of the rows, and at least COMPACT_MIN_DEAD.
COMPACT_DEAD_FRACTION = 0.25
COMPACT_MIN_DEAD = 1_000
_IN_BATCH = 900
#: Merges segments (list, new name, dead row ids) into the returned ones.
Merge = Callable[[Sequence[Mapping[str, Any]], str, np.ndarray], list[dict[str, Any]]]


def _new_snapshot_id() -> str:
    # Sortable by creation time; the random tail keeps two writers on two machines apart.
    return f"{time.time_ns():020d}-{secrets.token_hex(4)}"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    # WAL: readers in other processes keep reading while a write commits; FULL: a commit is on disk.
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    return conn


def _insert(
    conn: sqlite3.Connection, generation: int, documents: Sequence[DocumentRecord], chunks: Sequence[Chunk]
) -> np.ndarray:
    """Insert documents and chunks (inside the caller's transaction); the chunks' row ids."""
    row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'chunks'").fetchone()
    first = (row[0] if row else 0) + 1
    ids = np.arange(first, first + len(chunks), dtype=np.int64)
    conn.executemany(
        "INSERT INTO documents (doc_id, source, content_hash, title, metadata, chunk_ids, text, segments, added)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [(d.doc_id, d.source, d.content_hash, d.title, _dump_metadata(d), json.dumps(list(d.chunk_ids)), d.text,
          segments_json(d.segments) if d.segments else None, generation) for d in documents],
    )
    conn.executemany(
        f"INSERT INTO chunks ({CHUNK_COLUMNS}, added) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [(int(i), c.chunk_id, c.doc_id, c.ordinal, c.text, c.start, c.end, c.tokens, c.title,
          json.dumps(list(c.headings)), _dump_location(c), generation) for i, c in zip(ids, chunks)],
    )
    return ids


def _dump_metadata(record: DocumentRecord) -> str:
    try:
        return json.dumps(dict(record.metadata), sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise StoreError(f"document {record.doc_id!r}: metadata is not JSON-serializable: {exc}") from exc


def _dump_location(chunk: Chunk) -> str | None:
    if chunk.location is None:
        return None
    try:
        return json.dumps(dict(chunk.location), sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise StoreError(f"chunk {chunk.chunk_id!r}: location is not JSON-serializable: {exc}") from exc


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


def write_current(root: Path, manifest: Manifest, previous: Manifest | None) -> None:
    """Point CURRENT at a generation: temp file in the same directory, fsync, rename, fsync the directory.

    CURRENT also names the generation it replaced, whose files are kept for readers still on it.
    """
    data = manifest.to_json()
    if previous is not None:
        data["previous"] = {"snapshot": previous.snapshot, "segments": [s["name"] for s in previous.segments],
                            "lexical": [s["name"] for s in previous.lexical]}
    tmp = root / f"CURRENT.tmp-{secrets.token_hex(4)}"
    write_durably(tmp, json.dumps(data, indent=1, sort_keys=True).encode())
    os.replace(tmp, root / "CURRENT")
    fsync_path(root, directory=True)


class IndexWriter:
    """Publishes generations; exists only inside `IndexDirectory.writer()`, which holds the lock."""

    def __init__(self, directory: IndexDirectory, cache: EmbeddingCache, ann_min_rows: int = ANN_MIN_ROWS) -> None:
        self.directory = directory
        self.cache = cache
        self.ann_min_rows = ann_min_rows
        self._closed = False
        self._terms: Terms | None = None
        self._conn: sqlite3.Connection | None = None
        self._conn_snapshot: str | None = None
        self._fallback = False

    def _close(self) -> None:
        self._closed = True
        self._release_db()

    def _release_db(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = self._conn_snapshot = None

    def _live(self) -> None:
        if self._closed:
            raise StoreError(f"{self.directory.root}: this writer is closed")

    def _write_lexical(self, snapshot_dir: Path, name: str, ids: np.ndarray, chunks: Sequence[Chunk]) -> list[dict[str, Any]]:
        """The BM25 postings segment of new rows (none for no rows)."""
        if self._terms is None:
            self._terms = Terms()
        term_ids, vocabulary = self._terms.of_chunks(chunks)
        entry = postings.write_segment(snapshot_dir, name, ids, term_ids, vocabulary)
        return [entry] if entry else []

    # -- full publish --------------------------------------------------------------

    def publish(
        self,
        *,
        embedding_model: str,
        dims: int,
        documents: Sequence[DocumentRecord],
        chunks: Sequence[Chunk],
        vectors: np.ndarray,
        extra: Mapping[str, Any] | None = None,
        dense: DenseTarget | None = None,
    ) -> Manifest:
        """Write a complete new snapshot and make it the current one (first build, new model, new chunking).

        Chunks are stored in (document order, ordinal) order whatever order they come in.
        Afterwards only this snapshot and the one it replaced are kept.

        Args:
            embedding_model: the model the vectors come from.
            dims: the vectors' dimension.
            documents: every document of the new index, in order; each lists its chunk ids by ordinal.
            chunks: every chunk; each belongs to one of `documents`.
            vectors: float32, shape (len(chunks), dims); row i belongs to chunks[i].
            extra: JSON-serializable facts kept in the manifest (chunking settings, ...).
            dense: where the vectors go; None: FAISS segments in the snapshot directory. With
                Milvus, the snapshot's collection is filled and flushed before CURRENT flips.

        Raises:
            DimensionMismatchError: vectors are not (n, dims).
            StoreError: inconsistent input (names the id) or a failed write.
            ConfigError: Milvus asked for but pymilvus is not installed.
        """
        self._live()
        if not embedding_model:
            raise StoreError("embedding_model must not be empty")
        dims = operator.index(dims)  # a numpy integer would not survive json.dumps
        ordered, array = _check_publish_input(dims, documents, chunks, vectors)
        extra_json = _json_extra(extra)
        target = dense or DenseTarget()
        entry: dict[str, Any] = {"backend": target.backend}
        if target.backend == "milvus":
            load_milvus()  # before any file is written: a missing extra is a ConfigError
            entry["uri"] = target.stored_uri(self.directory.root)
        backend = make_backend(entry, ann_min_rows=self.ann_min_rows, milvus_token=self.directory.milvus_token)
        previous = self._previous_for_publish()
        snapshot_id = _new_snapshot_id()
        snapshots = self.directory.snapshots_dir
        tmp = snapshots / f"{_TMP_PREFIX}{snapshot_id}"
        try:
            self._ensure_snapshots_dir()
            tmp.mkdir()
            conn = _connect(tmp / DB_NAME)
            try:
                conn.executescript(SCHEMA)
                conn.execute("BEGIN")
                ids = _insert(conn, 1, documents, ordered)
                conn.execute("COMMIT")
            finally:
                conn.close()  # checkpoints the WAL into the file
            fsync_path(tmp / DB_NAME)
            lexical = self._write_lexical(tmp, new_segment_name(1), ids, ordered)
            entry = backend.create(tmp, snapshot_id, dims)
            segments = backend.add(tmp, entry, [], new_segment_name(1), ids, array)
            fsync_path(tmp, directory=True)
            os.rename(tmp, snapshots / snapshot_id)
            fsync_path(snapshots, directory=True)
            manifest = Manifest(FORMAT, snapshot_id, embedding_model, dims, len(documents), len(ordered), _now(),
                                extra_json, entry, 1, tuple(segments), 0, tuple(lexical))
            write_current(self.directory.root, manifest, previous)
        except (OSError, sqlite3.Error) as exc:
            self._discard(tmp)
            raise StoreError(f"cannot write snapshot {snapshot_id} in {snapshots}: {exc}") from exc
        except UnicodeEncodeError as exc:
            self._discard(tmp)
            raise StoreError(f"{_unencodable(documents, ordered)} is not valid Unicode: {exc}") from exc
        except BaseException:
            self._discard(tmp)
            raise
        self._release_db()
        self._collect_garbage(manifest, previous)
        return manifest

    def _previous_for_publish(self) -> Manifest | None:
        self._fallback = False
        try:
            return self.directory.current_manifest()
        except (CorruptIndexError, StoreError):
            # Damaged or old-format CURRENT: this publish replaces it, keeping the newest snapshot.
            self._fallback = True
            return None

    def _ensure_snapshots_dir(self) -> None:
        snapshots = self.directory.snapshots_dir
        if not snapshots.is_dir():
            snapshots.mkdir()
            fsync_path(self.directory.root, directory=True)

    # -- incremental update ------------------------------------------------------------

    def update(
        self,
        *,
        upserts: Sequence[DocumentRecord],
        chunks: Sequence[Chunk],
        vectors: np.ndarray,
        deletes: Sequence[str] = (),
        extra: Mapping[str, Any] | None = None,
    ) -> Manifest:
        """Add or replace `upserts` and remove `deletes` in the current snapshot, as one new generation.

        Costs what changed: the replaced and removed documents' rows are tombstoned, the
        new chunks inserted and their vectors written as one new segment.

        Args:
            upserts: documents to add or replace (by id), each listing its chunk ids by ordinal.
            chunks: every chunk of `upserts`.
            vectors: float32, shape (len(chunks), dims).
            deletes: ids of documents to remove (unknown ids are ignored).
            extra: replaces the manifest's extra when given.

        Raises:
            StoreError: nothing published yet, inconsistent input, or a failed write.
        """
        self._live()
        current = self.directory.current_manifest()
        if current is None:
            raise StoreError(f"{self.directory.root}: nothing to update; publish a first index")
        ordered, array = _check_publish_input(current.dims, upserts, chunks, vectors)
        extra_json = _json_extra(extra) if extra is not None else dict(current.extra)
        g = current.generation + 1
        path = self.directory.snapshots_dir / current.snapshot
        backend = make_backend(current.dense, ann_min_rows=self.ann_min_rows, milvus_token=self.directory.milvus_token)
        conn = self._db(current)
        gone = sorted({*deletes, *(d.doc_id for d in upserts)})
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                gone_docs = gone_chunks = 0
                for start in range(0, len(gone), _IN_BATCH):
                    batch = gone[start : start + _IN_BATCH]
                    marks = ",".join("?" * len(batch))
                    gone_docs += conn.execute(
                        f"UPDATE documents SET deleted = ? WHERE doc_id IN ({marks}) AND deleted IS NULL", [g, *batch]
                    ).rowcount
                    gone_chunks += conn.execute(
                        f"UPDATE chunks SET deleted = ? WHERE doc_id IN ({marks}) AND deleted IS NULL", [g, *batch]
                    ).rowcount
                ids = _insert(conn, g, upserts, ordered)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            segments = backend.add(path, current.dense, current.segments, new_segment_name(g), ids, array)
            segments = self._bounded(segments, g, lambda parts, name, dead: backend.merge(
                path, current.dense, parts, path, current.dense, name, dead))
            lexical = [*map(dict, current.lexical), *self._write_lexical(path, new_segment_name(g), ids, ordered)]
            lexical = self._bounded(lexical, g, lambda parts, name, dead: postings.merge_segments(
                path, parts, path, name, dead))
            manifest = replace(
                current, generation=g, documents=current.documents - gone_docs + len(upserts),
                chunks=current.chunks - gone_chunks + len(ordered), dead=current.dead + gone_chunks,
                segments=tuple(segments), lexical=tuple(lexical), extra=extra_json, created_at=_now(),
            )
            write_current(self.directory.root, manifest, current)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot write generation {g} of {path}: {exc}") from exc
        except UnicodeEncodeError as exc:
            raise StoreError(f"{_unencodable(upserts, ordered)} is not valid Unicode: {exc}") from exc
        finally:
            if self.directory.current_version() != f"{current.snapshot}/{g}":
                # Not published: reopening the database undoes the rows this write committed.
                self._release_db()
        backend.collect(path, {s["name"] for s in (*manifest.segments, *current.segments)})
        postings.collect(path, {s["name"] for s in (*manifest.lexical, *current.lexical)})
        if manifest.dead >= COMPACT_MIN_DEAD and manifest.dead > COMPACT_DEAD_FRACTION * (manifest.chunks + manifest.dead):
            return self.compact() or manifest
        return manifest

    def _bounded(self, segments: list[dict[str, Any]], g: int, merge: Merge) -> list[dict[str, Any]]:
        """Keep a segment list at most MAX_SEGMENTS long by merging its smallest segments.

        The two smallest always merge; the next smallest joins while it holds no more rows
        than those already taken, so a large segment is rewritten only together with as many
        rows again: each row is rewritten O(log n) times, and a small write never pays for
        rewriting the bulk of the index (compaction does that).
        """
        if len(segments) <= MAX_SEGMENTS:
            return segments
        # Smallest first; among equals the newest, whose rows are likeliest to change again.
        order = sorted(range(len(segments)), key=lambda i: (int(segments[i]["rows"]), -i))
        taken, rows = order[:2], sum(int(segments[i]["rows"]) for i in order[:2])
        for i in order[2:]:
            if int(segments[i]["rows"]) > rows:
                break
            taken.append(i)
            rows += int(segments[i]["rows"])
        chosen = set(taken)
        merged = merge([s for i, s in enumerate(segments) if i in chosen], new_segment_name(g) + "-m", self._dead_ids())
        return [*(s for i, s in enumerate(segments) if i not in chosen), *merged]

    def _dead_ids(self) -> np.ndarray:
        assert self._conn is not None
        return np.fromiter(
            (r[0] for r in self._conn.execute("SELECT id FROM chunks WHERE deleted IS NOT NULL")), dtype=np.int64
        )

    def _db(self, current: Manifest) -> sqlite3.Connection:
        """The writer's connection to the current snapshot, after undoing any unpublished write."""
        if self._conn is not None and self._conn_snapshot == current.snapshot:
            return self._conn
        self._release_db()
        path = self.directory.snapshots_dir / current.snapshot
        try:
            conn = _connect(path / DB_NAME)
        except sqlite3.Error as exc:
            raise CorruptIndexError(f"{path / DB_NAME}: unreadable: {exc}") from exc
        self._conn, self._conn_snapshot = conn, current.snapshot
        self._rollback_unpublished(current, path)
        return conn

    def _rollback_unpublished(self, current: Manifest, path: Path) -> None:
        """Delete rows of generations CURRENT never named (a writer died before publishing them)."""
        assert self._conn is not None
        conn, g = self._conn, current.generation
        orphans = np.fromiter((r[0] for r in conn.execute("SELECT id FROM chunks WHERE added > ?", (g,))),
                              dtype=np.int64)
        stale = conn.execute("SELECT count(*) FROM chunks WHERE deleted > ?", (g,)).fetchone()[0]
        if len(orphans) or stale:
            make_backend(current.dense, milvus_token=self.directory.milvus_token).discard(path, current.dense, orphans)
            conn.execute("BEGIN IMMEDIATE")
            for table in ("chunks", "documents"):
                conn.execute(f"DELETE FROM {table} WHERE added > ?", (g,))
                conn.execute(f"UPDATE {table} SET deleted = NULL WHERE deleted > ?", (g,))
            conn.execute("COMMIT")
        previous = self.directory.previous_segments()
        make_backend(current.dense, milvus_token=self.directory.milvus_token).collect(path, {s["name"] for s in current.segments} | previous)
        postings.collect(path, {s["name"] for s in current.lexical} | self.directory.previous_segments("lexical"))

    # -- compaction -------------------------------------------------------------------

    def compact(self) -> Manifest | None:
        """Rewrite the current generation as a new snapshot holding only live rows, in one segment.

        The only full rewrite besides a first build; readers keep the old snapshot until
        they reload. None if nothing is published.
        """
        self._live()
        current = self.directory.current_manifest()
        if current is None:
            return None
        self._db(current)  # undo an unpublished write first
        self._release_db()
        source = self.directory.snapshots_dir / current.snapshot
        snapshot_id = _new_snapshot_id()
        snapshots = self.directory.snapshots_dir
        tmp = snapshots / f"{_TMP_PREFIX}{snapshot_id}"
        g = current.generation
        try:
            tmp.mkdir()
            conn = _connect(tmp / DB_NAME)
            try:
                conn.executescript(SCHEMA)
                conn.execute("ATTACH DATABASE ? AS old", (f"{(source / DB_NAME).resolve().as_uri()}?mode=ro",))
                conn.execute("BEGIN")
                conn.execute(
                    "INSERT INTO documents (doc_id, source, content_hash, title, metadata, chunk_ids, text, segments, added) "
                    "SELECT doc_id, source, content_hash, title, metadata, chunk_ids, text, segments, 1 FROM old.documents "
                    f"WHERE {VISIBLE} ORDER BY id", (g, g),
                )
                conn.execute(
                    f"INSERT INTO chunks ({CHUNK_COLUMNS}, added) SELECT {CHUNK_COLUMNS}, 1 FROM old.chunks "
                    f"WHERE {VISIBLE} ORDER BY id", (g, g),
                )
                conn.execute("COMMIT")
                dead = np.fromiter(
                    (r[0] for r in conn.execute(
                        "SELECT id FROM old.chunks WHERE deleted IS NOT NULL AND deleted <= ?", (g,)
                    )),
                    dtype=np.int64,
                )
                conn.execute("DETACH DATABASE old")
            finally:
                conn.close()
            fsync_path(tmp / DB_NAME)
            backend = make_backend(current.dense, ann_min_rows=self.ann_min_rows, milvus_token=self.directory.milvus_token)
            entry = backend.create(tmp, snapshot_id, current.dims)
            segments = backend.merge(source, current.dense, current.segments, tmp, entry, new_segment_name(1), dead)
            lexical = postings.merge_segments(source, current.lexical, tmp, new_segment_name(1), dead)
            fsync_path(tmp, directory=True)
            os.rename(tmp, snapshots / snapshot_id)
            fsync_path(snapshots, directory=True)
            manifest = replace(current, snapshot=snapshot_id, generation=1, dead=0, segments=tuple(segments),
                               lexical=tuple(lexical), dense=entry, created_at=_now())
            write_current(self.directory.root, manifest, current)
        except (OSError, sqlite3.Error) as exc:
            self._discard(tmp)
            raise StoreError(f"cannot compact {source} into {tmp}: {exc}") from exc
        except BaseException:
            self._discard(tmp)
            raise
        self._collect_garbage(manifest, current)
        return manifest

    # -- garbage --------------------------------------------------------------------------

    def _discard(self, build: Path) -> None:
        """Remove a failed build and, best effort, its Milvus collection (GC retries a failed drop)."""
        if _drop_collection_of(build, self.directory.root, self.directory.milvus_token):
            remove_tree(build)

    def _collect_garbage(self, manifest: Manifest, previous: Manifest | None) -> None:
        """Delete unfinished builds and every snapshot but the current and the previous one.

        A snapshot's Milvus collection is dropped before its directory goes, so a failed
        drop keeps the directory and the next publish tries again. Best effort: the
        new generation is already published, and nothing here fails it.
        """
        root = self.directory.root
        keep = {manifest.snapshot}
        if previous is not None:
            keep.add(previous.snapshot)
        elif self._fallback:
            # CURRENT was damaged: keep the newest other snapshot as the fallback instead.
            names = [p.name for p in self.directory.snapshots_dir.iterdir() if SNAPSHOT_ID.match(p.name)]
            keep.add(max((n for n in names if n != manifest.snapshot), default=manifest.snapshot))
        try:
            for entry in self.directory.snapshots_dir.iterdir():
                unfinished = entry.name.startswith(_TMP_PREFIX)
                if unfinished or (SNAPSHOT_ID.match(entry.name) and entry.name not in keep):
                    if _drop_collection_of(entry, root, self.directory.milvus_token):
                        remove_tree(entry)
            for entry in root.glob("CURRENT.tmp-*"):
                entry.unlink(missing_ok=True)
        except OSError:
            pass
        if manifest.dense.get("backend") == "milvus" and is_local(str(manifest.dense["uri"])):
            _sweep_lite_file(root, str(manifest.dense["uri"]), keep)


def _json_extra(extra: Mapping[str, Any] | None) -> dict[str, Any]:
    try:
        return json.loads(json.dumps(dict(extra or {})))  # type: ignore[no-any-return]
    except (TypeError, ValueError) as exc:
        raise StoreError(f"publish extra is not JSON-serializable: {exc}") from exc


def _drop_collection_of(snapshot_dir: Path, root: Path, token: str | None) -> bool:
    """Drop the Milvus collection a snapshot (or an unfinished build) names; False if that failed."""
    try:
        data = json.loads((snapshot_dir / DENSE_MARKER).read_bytes())
        entry = dense_entry({"dense": data}, snapshot_dir / DENSE_MARKER)
    except (OSError, ValueError, CorruptIndexError, AttributeError):
        return True
    if entry["backend"] != "milvus":
        return True
    try:
        load_milvus().drop_collection(resolve_uri(entry["uri"], root), entry["collection"], token)
    except IoragError:
        return False
    return True


def drop_collections_outside(snapshot_dir: Path, root: Path, token: str | None) -> str | None:
    """Drop a snapshot's Milvus collection if it lives outside the index directory; the collection's
    name if that failed (a Lite file inside the directory goes with it)."""
    try:
        entry = dense_entry({"dense": json.loads((snapshot_dir / DENSE_MARKER).read_bytes())}, snapshot_dir)
    except (OSError, ValueError, CorruptIndexError, AttributeError):
        return None
    if entry["backend"] != "milvus" or _lite_file_inside(str(entry.get("uri", ""))):
        return None
    return None if _drop_collection_of(snapshot_dir, root, token) else str(entry["collection"])


def _lite_file_inside(stored_uri: str) -> bool:
    """Whether a stored Milvus URI names a Lite file inside the index directory (it goes with it)."""
    return is_local(stored_uri) and not Path(stored_uri).is_absolute() and not stored_uri.startswith("..")


def _sweep_lite_file(root: Path, stored_uri: str, keep: set[str]) -> None:
    """Drop `iorag_` collections of snapshots that no longer exist from a Lite file inside the index.

    Only a Lite file inside the index directory belongs to this index alone; a server
    or an outside file may hold other indexes' collections, so those are left alone.
    """
    if not _lite_file_inside(stored_uri):
        return
    present = {p.name.removeprefix(_TMP_PREFIX) for p in root.joinpath("snapshots").glob("*")}
    wanted = {collection_name(s) for s in keep | present}
    try:
        milvus = load_milvus()
        uri = resolve_uri(stored_uri, root)
        for name in milvus.list_collections(uri, "iorag_"):
            if name not in wanted:
                milvus.drop_collection(uri, name)
    except (IoragError, OSError):
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
