"""The index on disk: a snapshot (SQLite + vector and BM25 segments) written in generations, switched atomically.

Layout under the index root:

    cache.sqlite          embedding cache (`cache.py`)
    write.lock            one writer at a time
    CURRENT               the published generation's manifest (JSON), replaced atomically:
                          format 3, snapshot id, generation, counts, vector and lexical segments,
                          dense backend, extra, and the generation it replaced (whose files are
                          kept for its readers)
    snapshots/<id>/
        chunks.sqlite     documents and chunks, each row stamped with the generation that added
                          it and the one that deleted it (a tombstone); WAL mode, so readers
                          never wait for a writer
        segments/<name>/  immutable vector segments: vectors.npy (memory-mapped), ids.npy,
                          ann.faiss (IVF, for large segments); or, with the Milvus backend, one
                          collection iorag_<id> (dense.json names it)
        lexical/<name>/   immutable BM25 postings segments, memory-mapped (`postings.py`)
    snapshots/.tmp-<id>/  a snapshot being built; never read, removed by the next writer

A write adds rows under generation g+1, tombstones what it replaces, writes one
vector and one lexical segment, and only then replaces CURRENT: a crash at any moment leaves CURRENT
naming the last complete generation, and the next writer deletes the rows of the
unpublished one. Too many segments are merged; too many tombstones trigger
compaction into a new snapshot (`IndexWriter.compact`).

Modules: `snapshot` (the format; reading), `writer` (publishing, updating,
compacting, garbage collection), `directory` (CURRENT, the lock), `cache`,
`backends` (choosing a backend, Milvus URIs), `dense/` (the vector-backend
interface, FAISS (the only faiss import) and Milvus (the only pymilvus import),
the factory), `postings` (BM25 segments: writing, merging, ranking) and `durable` (fsync,
atomic writes).
"""

from __future__ import annotations

from .cache import EmbeddingCache
from .directory import IndexDirectory
from .snapshot import DocumentEntry, DocumentRecord, DocumentSummary, Manifest, Snapshot
from .writer import IndexWriter

__all__ = ["DocumentEntry", "DocumentRecord", "DocumentSummary", "EmbeddingCache", "IndexDirectory", "IndexWriter", "Manifest", "Snapshot"]
