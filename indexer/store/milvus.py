"""A snapshot's vectors in a Milvus collection; the only module that imports pymilvus.

Imported lazily (`backends.load_milvus`), so pymilvus stays an optional extra.
Each snapshot gets its own collection, `iorag_<snapshot id>`, with an INT64
primary key (the chunk's row id in chunks.sqlite) and a FLOAT_VECTOR field
under a FLAT index with the IP metric: brute force, so results are exact and
match FAISS's IndexFlatIP on the same unit vectors. The writer creates,
fills and flushes the collection before CURRENT names the snapshot, and drops
it when the snapshot is garbage-collected.

A URI is a Milvus Lite file (`.../milvus.db`, one process at a time) or a
Milvus server (`http://host:19530`).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

import numpy as np
from pymilvus import DataType, MilvusClient
from pymilvus.exceptions import MilvusException

from ..errors import CorruptIndexError, StoreError

_ID, _VECTOR = "id", "vector"
#: Milvus caps both top-k and queries per request at 16,384.
MAX_TOP_K = 16_384
_QUERY_BATCH = 1_024
_GET_BATCH = 1_000
#: Rows per insert request stay well under gRPC's 64 MiB message cap.
_INSERT_BYTES = 16 * 1024 * 1024


@contextmanager
def _translated(uri: str, doing: str) -> Iterator[None]:
    """Turn pymilvus's errors into StoreError, naming the URI and the step."""
    try:
        yield
    except MilvusException as exc:
        hint = "is Milvus running at that URI?"
        if "://" not in uri:
            hint = "Milvus Lite opens a file in one process at a time; stop the other one or use a Milvus server"
        raise StoreError(f"Milvus at {uri}: cannot {doing}: {getattr(exc, 'message', exc)}", hint=hint) from exc


def _client(uri: str) -> MilvusClient:
    with _translated(uri, "connect"):
        return MilvusClient(uri)


def write_collection(uri: str, name: str, vectors: np.ndarray, dims: int) -> None:
    """Create collection `name` holding vector row i under id i + 1, flushed before returning.

    Raises:
        StoreError: Milvus refused (the collection already exists, unreachable, ...).
    """
    client = _client(uri)
    try:
        with _translated(uri, f"create collection {name}"):
            if client.has_collection(name):
                raise StoreError(f"Milvus at {uri}: collection {name} already exists")
            schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
            schema.add_field(_ID, DataType.INT64, is_primary=True)
            schema.add_field(_VECTOR, DataType.FLOAT_VECTOR, dim=dims)
            params = client.prepare_index_params()
            params.add_index(field_name=_VECTOR, index_type="FLAT", metric_type="IP")
            client.create_collection(name, schema=schema, index_params=params, consistency_level="Strong")
        with _translated(uri, f"insert into collection {name}"):
            step = max(1, _INSERT_BYTES // (4 * dims))
            for start in range(0, len(vectors), step):
                rows = vectors[start : start + step]
                client.insert(name, [{_ID: start + i + 1, _VECTOR: row} for i, row in enumerate(rows)])
            # Sealed and persisted before CURRENT can name the snapshot.
            client.flush(name)
    finally:
        client.close()


def drop_collection(uri: str, name: str) -> None:
    """Drop a collection if it exists.

    Raises:
        StoreError: Milvus could not be reached or refused.
    """
    client = _client(uri)
    try:
        with _translated(uri, f"drop collection {name}"):
            if client.has_collection(name):
                client.drop_collection(name)
    finally:
        client.close()


def list_collections(uri: str, prefix: str) -> list[str]:
    """The collections at `uri` whose names start with `prefix`."""
    client = _client(uri)
    try:
        with _translated(uri, "list collections"):
            return [n for n in client.list_collections() if n.startswith(prefix)]
    finally:
        client.close()


class MilvusDense:
    """One snapshot's collection, opened for search (the `DenseIndex` of the Milvus backend)."""

    def __init__(self, uri: str, name: str) -> None:
        """Connect and load the collection.

        Raises:
            CorruptIndexError: the collection is missing or has no vector field.
            StoreError: Milvus cannot be reached.
        """
        self.uri, self.name = uri, name
        self._client: MilvusClient | None = _client(uri)
        try:
            with _translated(uri, f"open collection {name}"):
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
        with _translated(self.uri, f"count collection {self.name}"):
            result = self._live().query(self.name, output_fields=["count(*)"])
        return int(result[0]["count(*)"])

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-k by inner product: (scores, ids), each (n, min(k, 16384)); id -1 pads."""
        k = min(k, MAX_TOP_K)
        array = np.asarray(queries, dtype=np.float32)
        scores = np.zeros((len(array), k), dtype=np.float32)
        ids = np.full((len(array), k), -1, dtype=np.int64)
        client = self._live()
        for start in range(0, len(array), _QUERY_BATCH):
            batch = array[start : start + _QUERY_BATCH]
            with _translated(self.uri, f"search collection {self.name}"):
                hits = client.search(
                    self.name, data=[row.tolist() for row in batch], limit=k, output_fields=[],
                    search_params={"metric_type": "IP"},
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
            with _translated(self.uri, f"read collection {self.name}"):
                rows = client.get(self.name, ids=unique[start : start + _GET_BATCH], output_fields=[_VECTOR])
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
