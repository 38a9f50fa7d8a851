"""The index on disk: immutable snapshots (SQLite metadata + FAISS vectors) switched atomically.

Layout under the index root:

    cache.sqlite          embedding cache (`cache.py`)
    write.lock            one writer at a time
    CURRENT               {"format": 1, "snapshot": "<id>"}, replaced atomically
    snapshots/<id>/       immutable once published:
        manifest.json     model, dims, counts, file sizes, caller's extras
        chunks.sqlite     documents and chunks tables
        dense.faiss       IndexIDMap2(IndexFlatIP(dims)); ids are chunks.id
                          (or, with the Milvus backend, collection iorag_<id>, named in the manifest)
    snapshots/.tmp-<id>/  a snapshot being built; never read, removed by the next publish

A snapshot is built in its `.tmp-` directory with every file fsynced, renamed
into place, and only then named by CURRENT. A crash at any moment leaves
CURRENT naming the last complete snapshot.

Modules: `snapshot` (the format; reading), `writer` (building, publishing,
garbage collection), `directory` (CURRENT, the lock), `cache`, `backends`
(the `DenseIndex` interface, choosing FAISS or Milvus), `dense` (the only faiss
import), `milvus` (the only pymilvus import, loaded lazily) and `durable`
(fsync, atomic writes).
"""

from __future__ import annotations

from .cache import EmbeddingCache
from .directory import IndexDirectory
from .snapshot import DocumentRecord, DocumentSummary, Manifest, Snapshot
from .writer import IndexWriter

__all__ = ["DocumentRecord", "DocumentSummary", "EmbeddingCache", "IndexDirectory", "IndexWriter", "Manifest", "Snapshot"]
