"""A snapshot's vectors in a Milvus collection; the only module that imports pymilvus.

Imported lazily (`dense.factory.load_milvus`), so pymilvus stays an optional extra.
Each snapshot gets its own collection, `iorag_<snapshot id>`, with an INT64
primary key (the chunk's row id in chunks.sqlite) and a FLOAT_VECTOR field
under the IP metric. The writer creates, fills and flushes the collection (and
waits for its index) before CURRENT names the snapshot, and drops it when the
snapshot is garbage-collected.

A URI is a Milvus Lite file (`.../milvus.db`, one process at a time) or a
Milvus server (`http://host:19530`, optionally with a token). The index type
follows the kind (`choose_index`) and is recorded in the manifest's `dense` entry:

- a server gets HNSW, approximate: the scale-out case, where a scan of every
  vector per query is what we want to avoid;
- a Lite file gets FLAT, exact and equal to FAISS's IndexFlatIP on the same
  unit vectors: Lite serves one process and small indexes, and older Lite
  releases build nothing but FLAT, IVF_FLAT and AUTOINDEX.

A server may hold fewer than ~1,000 rows in a segment without building its index;
those are searched by brute force, so small collections are exact on both kinds.
"""

from __future__ import annotations

import json
import logging
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import grpc
import numpy as np
from pymilvus import DataType, MilvusClient
from pymilvus.exceptions import MilvusException

from ...errors import CorruptIndexError, StoreError
from ..backends import DENSE_MARKER, collection_name, is_local, resolve_uri
from ..durable import write_durably
from ..rows import live_ids
from .base import DenseBackend, Segment

# pymilvus logs each failed call to stderr through handlers of its own; every such failure
# reaches the caller here as one StoreError (one line in the CLI), so its copies are muted.
for _logger in ("pymilvus", "pymilvus.milvus_client"):
    logging.getLogger(_logger).setLevel(logging.CRITICAL)

_ID, _VECTOR = "id", "vector"
#: Milvus caps both top-k and queries per request at 16,384.
MAX_TOP_K = 16_384
_QUERY_BATCH = 1_024
_GET_BATCH = 1_000
#: Rows per insert request stay well under gRPC's 64 MiB message cap.
_INSERT_BYTES = 16 * 1024 * 1024
#: HNSW on a server. M 16 (links per node, ~150 bytes per vector) and efConstruction 200 are
#: common settings within Milvus's documented ranges; `ef` is the search breadth, raised to k
#: when k is larger (Milvus needs ef >= k). Recall@10 against exact search at ef 128, 20,000
#: vectors of 64 dims (bench/milvus_hnsw.py): 0.999 clustered, 0.90 unclustered (uniform on the
#: sphere, the worst case for a graph; real embeddings sit between), at ~2 ms per query.
HNSW: Mapping[str, Any] = {"type": "HNSW", "M": 16, "efConstruction": 200, "ef": 128}
FLAT: Mapping[str, Any] = {"type": "FLAT"}
#: Reads skip Strong consistency's wait for the newest time tick (~200 ms per request on a
#: server): a snapshot's collection is complete and flushed before any reader can open it, and
#: nothing writes to it afterwards, so every level sees all of it. Writing into a collection
#: that readers hold open would need Strong again (or a guarantee timestamp).
_READ_CONSISTENCY = "Eventually"
#: How long a publish waits for a server to finish building a new collection's index.
_INDEX_WAIT_SECONDS = 600.0


def choose_index(uri: str) -> dict[str, Any]:
    """The index a new collection at `uri` gets: FLAT in a Lite file, HNSW on a server."""
    return dict(FLAT if is_local(uri) else HNSW)


@contextmanager
def _translated(uri: str, doing: str, token: str | None = None) -> Iterator[None]:
    """Turn pymilvus's errors into StoreError, naming the URI and the step (never the token)."""
    try:
        yield
    except (MilvusException, grpc.RpcError) as exc:
        # pymilvus lets some gRPC errors through untranslated (a refused login among them).
        hint = "is Milvus running at that URI? A server with authentication needs IORAG_MILVUS_TOKEN"
        if is_local(uri):
            hint = "Milvus Lite opens a file in one process at a time; stop the other one or use a Milvus server"
        message = str(getattr(exc, "message", None) or _grpc_details(exc))
        if token:
            message = message.replace(token, "***")
        raise StoreError(f"Milvus at {uri}: cannot {doing}: {message}", hint=hint) from exc


def _grpc_details(exc: BaseException) -> str:
    details = getattr(exc, "details", None)
    return str(details() if callable(details) else exc)


def _client(uri: str, token: str | None = None) -> MilvusClient:
    with _translated(uri, "connect", token):
        # A Lite file has no users; a server takes "user:password" or an API key.
        return MilvusClient(uri, token=token) if token and not is_local(uri) else MilvusClient(uri)


def write_collection(
    uri: str, name: str, vectors: np.ndarray, dims: int, *, index: Mapping[str, Any] | None = None,
    token: str | None = None, ids: np.ndarray | None = None,
) -> None:
    """Create collection `name` holding vector row i under id i + 1, flushed and indexed before returning.

    Args:
        ids: the rows' ids instead of 1..n.
        index: from `choose_index` (as the manifest records it); None: FLAT.
        token: a server's credentials, `user:password` or an API key.

    Raises:
        StoreError: Milvus refused (the collection already exists, unreachable, ...).
    """
    spec = dict(index or FLAT)
    client = _client(uri, token)
    try:
        with _translated(uri, f"create collection {name}", token):
            if client.has_collection(name):
                raise StoreError(f"Milvus at {uri}: collection {name} already exists")
            schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
            schema.add_field(_ID, DataType.INT64, is_primary=True)
            schema.add_field(_VECTOR, DataType.FLOAT_VECTOR, dim=dims)
            # Created without an index, so it is not loaded yet: see below.
            client.create_collection(name, schema=schema, consistency_level="Strong")
        with _translated(uri, f"insert into collection {name}", token):
            step = max(1, _INSERT_BYTES // (4 * dims))
            for start in range(0, len(vectors), step):
                rows = vectors[start : start + step]
                keys = range(start + 1, start + 1 + len(rows)) if ids is None else ids[start : start + step]
                client.insert(name, [{_ID: int(key), _VECTOR: row} for key, row in zip(keys, rows)])
            # Sealed and persisted before CURRENT can name the snapshot.
            client.flush(name)
        with _translated(uri, f"index collection {name}", token):
            params = client.prepare_index_params()
            build = {key: spec[key] for key in ("M", "efConstruction") if key in spec}
            params.add_index(field_name=_VECTOR, index_type=spec["type"], metric_type="IP", params=build)
            client.create_index(name, params)
            _wait_for_index(client, name)
            # Loaded only now, with every segment indexed: a collection loaded while it is filled
            # keeps answering from the raw rows (a scan) until it is released, whatever was built.
            client.load_collection(name)
    finally:
        client.close()


def has_collection(uri: str, name: str, token: str | None = None) -> bool:
    """Whether collection `name` exists at `uri`."""
    client = _client(uri, token)
    try:
        with _translated(uri, f"look for collection {name}", token):
            return bool(client.has_collection(name))
    finally:
        client.close()


def insert_rows(uri: str, name: str, ids: np.ndarray, vectors: np.ndarray, token: str | None = None) -> None:
    """Add vectors under these ids to an existing collection, flushed before returning (an incremental
    write: the collection's index takes them in as the server seals segments; until then they are scanned).

    Raises:
        StoreError: Milvus refused or cannot be reached.
    """
    client = _client(uri, token)
    try:
        with _translated(uri, f"insert into collection {name}", token):
            step = max(1, _INSERT_BYTES // (4 * max(1, vectors.shape[1] if vectors.ndim == 2 else 1)))
            for start in range(0, len(vectors), step):
                rows = vectors[start : start + step]
                keys = ids[start : start + step]
                client.insert(name, [{_ID: int(key), _VECTOR: row} for key, row in zip(keys, rows)])
            # Persisted before CURRENT can name the new generation.
            client.flush(name)
    finally:
        client.close()


def delete_rows(uri: str, name: str, ids: np.ndarray, token: str | None = None) -> None:
    """Remove these ids from a collection (rows of a write that never got published).

    Raises:
        StoreError: Milvus refused or cannot be reached.
    """
    if not len(ids):
        return
    client = _client(uri, token)
    try:
        with _translated(uri, f"delete from collection {name}", token):
            for start in range(0, len(ids), _GET_BATCH):
                client.delete(name, ids=[int(i) for i in ids[start : start + _GET_BATCH]])
            client.flush(name)
    finally:
        client.close()


def _wait_for_index(client: MilvusClient, name: str) -> None:
    """Wait until the server has indexed every flushed row, so the first searches are not scans.

    Unindexed rows are still searched (by brute force), so a timeout costs speed, not results.
    """
    deadline = time.monotonic() + _INDEX_WAIT_SECONDS
    while time.monotonic() < deadline:
        info = client.describe_index(name, _VECTOR)
        if int(info.get("pending_index_rows", 0)) == 0 and info.get("state", "Finished") == "Finished":
            return
        if info.get("state") == "Failed":
            reason = info.get("index_state_fail_reason", "")
            raise StoreError(f"Milvus could not build the index of collection {name}: {reason}")
        time.sleep(0.2)


def drop_collection(uri: str, name: str, token: str | None = None) -> None:
    """Drop a collection if it exists.

    Raises:
        StoreError: Milvus could not be reached or refused.
    """
    client = _client(uri, token)
    try:
        with _translated(uri, f"drop collection {name}", token):
            if client.has_collection(name):
                client.drop_collection(name)
    finally:
        client.close()


def list_collections(uri: str, prefix: str, token: str | None = None) -> list[str]:
    """The collections at `uri` whose names start with `prefix`."""
    client = _client(uri, token)
    try:
        with _translated(uri, "list collections", token):
            return [n for n in client.list_collections() if n.startswith(prefix)]
    finally:
        client.close()


class MilvusDense:
    """One snapshot's collection, opened for search (the `DenseIndex` of the Milvus backend)."""

    def __init__(
        self, uri: str, name: str, *, index: Mapping[str, Any] | None = None, token: str | None = None
    ) -> None:
        """Connect and load the collection.

        Args:
            index: the manifest's record of the collection's index (its search breadth); None: FLAT.
            token: a server's credentials.

        Raises:
            CorruptIndexError: the collection is missing or has no vector field.
            StoreError: Milvus cannot be reached.
        """
        self.uri, self.name, self._token = uri, name, token
        self.index: dict[str, Any] = dict(index or FLAT)
        self._client: MilvusClient | None = _client(uri, token)
        try:
            with _translated(uri, f"open collection {name}", token):
                if not self._client.has_collection(name):
                    raise CorruptIndexError(f"Milvus at {uri}: collection {name} is missing")
                fields = self._client.describe_collection(name)["fields"]
                dims = [f["params"].get("dim") for f in fields if f["name"] == _VECTOR]
                if not dims:
                    raise CorruptIndexError(f"Milvus at {uri}: collection {name} has no {_VECTOR} field")
                self.dims: int = int(dims[0])
                self._client.load_collection(name)
        except BaseException:
            self.close()
            raise

    def _live(self) -> MilvusClient:
        if self._client is None:
            raise StoreError(f"Milvus collection {self.name} is closed")
        return self._client

    def count(self) -> int:
        with _translated(self.uri, f"count collection {self.name}", self._token):
            result = self._live().query(self.name, output_fields=["count(*)"], consistency_level=_READ_CONSISTENCY)
        return int(result[0]["count(*)"])

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k by inner product (exact with FLAT): (scores, ids), each (n, min(k, 16384)); id -1 pads."""
        k = min(k, MAX_TOP_K)
        params: dict[str, Any] = {"metric_type": "IP"}
        if self.index["type"] == "HNSW":
            params["params"] = {"ef": max(k, int(self.index.get("ef", HNSW["ef"])))}
        array = np.asarray(queries, dtype=np.float32)
        scores = np.zeros((len(array), k), dtype=np.float32)
        ids = np.full((len(array), k), -1, dtype=np.int64)
        client = self._live()
        for start in range(0, len(array), _QUERY_BATCH):
            batch = array[start : start + _QUERY_BATCH]
            with _translated(self.uri, f"search collection {self.name}", self._token):
                hits = client.search(
                    self.name, data=[row.tolist() for row in batch], limit=k, output_fields=[], search_params=params,
                    consistency_level=_READ_CONSISTENCY,
                )
            for offset, row in enumerate(hits):
                for j, hit in enumerate(row):
                    scores[start + offset, j] = hit["distance"]
                    ids[start + offset, j] = hit["id"]
        return scores, ids

    def reconstruct(self, ids: np.ndarray) -> np.ndarray:
        """The stored vectors of these ids, in the order given.

        Raises:
            CorruptIndexError: an id the collection does not hold.
        """
        keys = [int(i) for i in np.asarray(ids).ravel()]
        found: dict[int, Any] = {}
        client = self._live()
        unique = list(dict.fromkeys(keys))
        for start in range(0, len(unique), _GET_BATCH):
            with _translated(self.uri, f"read collection {self.name}", self._token):
                rows = client.get(self.name, ids=unique[start : start + _GET_BATCH], output_fields=[_VECTOR],
                                  consistency_level=_READ_CONSISTENCY)
            found.update((int(row[_ID]), row[_VECTOR]) for row in rows)
        missing = [key for key in keys if key not in found]
        if missing:
            raise CorruptIndexError(f"Milvus collection {self.name} lacks vector id {missing[0]}")
        if not keys:
            return np.zeros((0, self.dims), dtype=np.float32)
        return np.asarray([found[key] for key in keys], dtype=np.float32)

    def close(self) -> None:
        client, self._client = getattr(self, "_client", None), None
        if client is not None:
            client.close()


class MilvusBackend(DenseBackend):
    """Vectors in one Milvus collection per snapshot; a write inserts its rows, nothing is copied.

    Rows deleted by later generations stay in the collection until compaction makes
    a new snapshot (and collection); readers drop them (and rows newer than their
    generation) when they look the hits up in SQLite. On a server, reads use eventual
    consistency, so a row just written may take a moment to be found by dense search.
    """

    name = "milvus"
    exact_count = False

    def __init__(self, stored_uri: str = "milvus.db", token: str | None = None) -> None:
        self.stored_uri = stored_uri
        self.token = token

    @staticmethod
    def _uri(snapshot_dir: Path, entry: Mapping[str, Any]) -> str:
        # The index root is two levels up (snapshots/<id>); a Lite file is stored relative to it.
        return resolve_uri(str(entry["uri"]), snapshot_dir.parent.parent)

    def create(self, snapshot_dir: Path, snapshot_id: str, dims: int) -> dict[str, Any]:
        entry: dict[str, Any] = {"backend": "milvus", "uri": self.stored_uri, "collection": collection_name(snapshot_id)}
        entry["index"] = choose_index(self._uri(snapshot_dir, entry))
        # The marker goes first, so the collection of a crashed build is found and dropped.
        write_durably(snapshot_dir / DENSE_MARKER, json.dumps(entry).encode())
        return entry

    def add(
        self, snapshot_dir: Path, entry: Mapping[str, Any], segments: Sequence[Segment], name: str,
        ids: np.ndarray, vectors: np.ndarray,
    ) -> list[dict[str, Any]]:
        uri, collection = self._uri(snapshot_dir, entry), str(entry["collection"])
        if not has_collection(uri, collection, self.token):
            # The snapshot's first write: fill, then build the index and load (see write_collection).
            dims = int(vectors.shape[1])
            write_collection(uri, collection, vectors, dims, index=entry.get("index"), token=self.token, ids=ids)
        elif len(ids):
            insert_rows(uri, collection, ids, vectors, self.token)
        return [dict(s) for s in segments]

    def merge(
        self, source_dir: Path, source: Mapping[str, Any], segments: Sequence[Segment],
        target_dir: Path, target: Mapping[str, Any], name: str, dead: np.ndarray,
    ) -> list[dict[str, Any]]:
        """Compaction into a new collection: copy the live rows over (a collection has no segments of ours)."""
        if source.get("collection") == target.get("collection"):
            return [dict(s) for s in segments]
        live = live_ids(target_dir)
        reader = MilvusDense(self._uri(source_dir, source), str(source["collection"]), index=source.get("index"),
                             token=self.token)
        try:
            vectors = reader.reconstruct(live) if len(live) else np.zeros((0, reader.dims), dtype=np.float32)
        finally:
            reader.close()
        uri = self._uri(target_dir, target)
        write_collection(uri, str(target["collection"]), vectors, int(vectors.shape[1]), index=target.get("index"),
                         token=self.token, ids=live)
        return [dict(s) for s in segments]

    def discard(self, snapshot_dir: Path, entry: Mapping[str, Any], ids: np.ndarray) -> None:
        delete_rows(self._uri(snapshot_dir, entry), str(entry["collection"]), ids, self.token)

    def open(
        self, snapshot_dir: Path, entry: Mapping[str, Any], segments: Sequence[Segment], dims: int,
        dead: np.ndarray,
    ) -> MilvusDense:
        return MilvusDense(self._uri(snapshot_dir, entry), str(entry["collection"]), index=entry.get("index"),
                           token=self.token)

    def drop(self, snapshot_dir: Path, entry: Mapping[str, Any]) -> bool:
        try:
            drop_collection(self._uri(snapshot_dir, entry), str(entry["collection"]), self.token)
        except StoreError:
            return False
        return True
