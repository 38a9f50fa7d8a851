"""Building a snapshot and publishing it: IndexWriter, then garbage collection of old snapshots."""

from __future__ import annotations

import json
import operator
import os
import secrets
import sqlite3
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

from ..errors import CorruptIndexError, DimensionMismatchError, IoragError, StoreError
from ..models import Chunk, segments_json
from .backends import DenseTarget, collection_name, dense_entry, is_local, load_milvus, resolve_uri
from .cache import EmbeddingCache
from .dense import write_dense
from .durable import fsync_path, remove_tree, write_durably
from .snapshot import CHUNK_COLUMNS, FORMAT, SCHEMA, SNAPSHOT_ID, DocumentRecord, Manifest

if TYPE_CHECKING:
    from .directory import IndexDirectory

_TMP_PREFIX = ".tmp-"
#: Written first in a Milvus build: names the collection so an unfinished build can be cleaned up.
_DENSE_MARKER = "dense.json"


def _new_snapshot_id() -> str:
    # Sortable by creation time; the random tail keeps two writers on two machines apart.
    return f"{time.time_ns():020d}-{secrets.token_hex(4)}"


def _write_chunks_db(path: Path, documents: Sequence[DocumentRecord], chunks: Sequence[Chunk]) -> None:
    """Write chunks.sqlite in one transaction; chunk row ids are 1..n in the order given."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        # A half-written file here is thrown away with its .tmp directory, so no journal is
        # needed; durability comes from the explicit fsync after close.
        conn.execute("PRAGMA journal_mode = OFF")
        conn.execute("PRAGMA synchronous = OFF")
        conn.executescript(SCHEMA)
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO documents (id, doc_id, source, content_hash, title, metadata, chunk_ids, text, segments)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (i, d.doc_id, d.source, d.content_hash, d.title, _dump_metadata(d), json.dumps(list(d.chunk_ids)),
                 d.text, segments_json(d.segments) if d.segments else None)
                for i, d in enumerate(documents, start=1)
            ],
        )
        conn.executemany(
            f"INSERT INTO chunks ({CHUNK_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (i, c.chunk_id, c.doc_id, c.ordinal, c.text, c.start, c.end, c.tokens, c.title,
                 json.dumps(list(c.headings)), json.dumps(dict(c.location), sort_keys=True) if c.location else None)
                for i, c in enumerate(chunks, start=1)
            ],
        )
        conn.execute("COMMIT")
    finally:
        conn.close()
    fsync_path(path)


def _dump_metadata(record: DocumentRecord) -> str:
    try:
        return json.dumps(dict(record.metadata), sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise StoreError(f"document {record.doc_id!r}: metadata is not JSON-serializable: {exc}") from exc


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
    write_durably(tmp, json.dumps({"format": FORMAT, "snapshot": snapshot_id}).encode())
    os.replace(tmp, root / "CURRENT")
    fsync_path(root, directory=True)


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
        dense: DenseTarget | None = None,
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
            dense: where the vectors go; None: dense.faiss in the snapshot directory. With
                Milvus, the snapshot's collection is filled and flushed before CURRENT flips.

        Returns:
            The new snapshot's manifest.

        Raises:
            DimensionMismatchError: vectors are not (n, dims).
            StoreError: inconsistent input (names the id) or a failed write.
            ConfigError: Milvus asked for but pymilvus is not installed.
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
            previous = max(filter(SNAPSHOT_ID.match, names), default=None)
        snapshot_id = _new_snapshot_id()
        tmp = snapshots / f"{_TMP_PREFIX}{snapshot_id}"
        target = dense or DenseTarget()
        entry: dict[str, Any] = {"backend": "faiss"}
        milvus = None
        if target.backend == "milvus":
            milvus = load_milvus()  # before any file is written: a missing extra is a ConfigError
            entry = {"backend": "milvus", "uri": target.stored_uri(root), "collection": collection_name(snapshot_id)}
            entry["index"] = milvus.choose_index(resolve_uri(entry["uri"], root))
        manifest = Manifest(FORMAT, snapshot_id, embedding_model, dims, len(documents), len(ordered),
                            datetime.now(timezone.utc).isoformat(timespec="milliseconds"), extra_json, entry)
        try:
            if not snapshots.is_dir():
                snapshots.mkdir()
                fsync_path(root, directory=True)
            tmp.mkdir()
            _write_chunks_db(tmp / "chunks.sqlite", documents, ordered)
            if milvus is None:
                write_dense(tmp / "dense.faiss", array, dims)
            else:
                # The marker goes first, so the collection of a crashed build is found and dropped.
                write_durably(tmp / _DENSE_MARKER, json.dumps(entry).encode())
                milvus.write_collection(resolve_uri(entry["uri"], root), entry["collection"], array, dims,
                                        index=entry["index"], token=self.directory.milvus_token)
            _write_manifest(tmp, manifest, previous)
            fsync_path(tmp, directory=True)
            os.rename(tmp, snapshots / snapshot_id)
            fsync_path(snapshots, directory=True)
            _write_current(root, snapshot_id)
        except (OSError, sqlite3.Error) as exc:
            self._discard(tmp)
            raise StoreError(f"cannot write snapshot {snapshot_id} in {snapshots}: {exc}") from exc
        except UnicodeEncodeError as exc:
            self._discard(tmp)
            raise StoreError(f"{_unencodable(documents, ordered)} is not valid Unicode: {exc}") from exc
        except BaseException:
            self._discard(tmp)
            raise
        self._collect_garbage(keep={snapshot_id, previous} if previous else {snapshot_id}, dense=entry)
        return manifest

    def _discard(self, build: Path) -> None:
        """Remove a failed build and, best effort, its Milvus collection (GC retries a failed drop)."""
        if _drop_collection_of(build, self.directory.root, self.directory.milvus_token):
            remove_tree(build)

    def _collect_garbage(self, keep: set[str], dense: Mapping[str, Any]) -> None:
        """Delete unfinished builds and every snapshot but `keep` (safe: we hold the lock).

        A snapshot's Milvus collection is dropped before its directory goes, so a failed
        drop keeps the directory and the next publish tries again. Best effort: the
        snapshot is already published, and nothing here fails the publish.
        """
        root = self.directory.root
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
        if dense.get("backend") == "milvus" and is_local(dense["uri"]):
            _sweep_lite_file(root, dense["uri"], keep)


def _drop_collection_of(snapshot_dir: Path, root: Path, token: str | None) -> bool:
    """Drop the Milvus collection a snapshot (or an unfinished build) names; False if that failed."""
    for name in ("manifest.json", _DENSE_MARKER):
        try:
            data = json.loads((snapshot_dir / name).read_bytes())
            entry = dense_entry(data if name == "manifest.json" else {"dense": data}, snapshot_dir / name)
        except (OSError, ValueError, CorruptIndexError, AttributeError):
            continue
        if entry["backend"] != "milvus":
            return True
        try:
            load_milvus().drop_collection(resolve_uri(entry["uri"], root), entry["collection"], token)
        except IoragError:
            return False
        return True
    return True


def _sweep_lite_file(root: Path, stored_uri: str, keep: set[str]) -> None:
    """Drop `iorag_` collections of snapshots that no longer exist from a Lite file inside the index.

    Only a Lite file inside the index directory belongs to this index alone; a server
    or an outside file may hold other indexes' collections, so those are left alone.
    """
    if Path(stored_uri).is_absolute() or stored_uri.startswith(".."):
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


def _write_manifest(directory: Path, manifest: Manifest, previous: str | None) -> None:
    faiss_backend = manifest.dense["backend"] == "faiss"
    files = ("chunks.sqlite", "dense.faiss") if faiss_backend else ("chunks.sqlite",)
    data = {
        "format": manifest.format,
        "snapshot": manifest.snapshot,
        "embedding_model": manifest.embedding_model,
        "dims": manifest.dims,
        "documents": manifest.documents,
        "chunks": manifest.chunks,
        "created_at": manifest.created_at,
        "previous": previous,
        "index": {"type": "IndexIDMap2(IndexFlatIP)", "metric": "inner_product", "ids": "chunks.id"}
        if faiss_backend else {"type": f"Milvus {manifest.dense.get('index', {}).get('type', 'FLAT')}",
                               "metric": "IP", "ids": "chunks.id"},
        "files": {name: {"bytes": (directory / name).stat().st_size} for name in files},
        "dense": dict(manifest.dense),
        "extra": dict(manifest.extra),
    }
    write_durably(directory / "manifest.json", json.dumps(data, indent=2, sort_keys=True).encode())
