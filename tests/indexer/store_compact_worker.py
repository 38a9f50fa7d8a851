"""Writes to an index forever (updates, and a compaction every third step); the kill -9 test's victim."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from indexer.models import Chunk
from indexer.store import DocumentRecord, IndexDirectory

DIMS = 16


def doc(i: int) -> tuple[DocumentRecord, list[Chunk], np.ndarray]:
    chunks = [Chunk(f"c{i}-{o}", f"d{i}", o, f"item {i} word{i % 7} part {o}", 0, 10, 4, f"Doc {i}") for o in range(3)]
    rng = np.random.default_rng(i)
    v = rng.standard_normal((3, DIMS)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    record = DocumentRecord(f"d{i}", f"src/{i}", f"h{i}", f"Doc {i}", {}, tuple(c.chunk_id for c in chunks), "text")
    return record, chunks, v


def main() -> None:
    directory = IndexDirectory(Path(sys.argv[1]))
    with directory.writer(timeout=10, ann_min_rows=40) as writer:
        if not directory.exists():
            parts = [doc(i) for i in range(30)]
            writer.publish(embedding_model="test/m", dims=DIMS, documents=[p[0] for p in parts],
                           chunks=[c for p in parts for c in p[1]], vectors=np.concatenate([p[2] for p in parts]))
        step = directory.current_manifest().extra.get("step", 0)  # type: ignore[union-attr]
        while True:
            step += 1
            record, chunks, vectors = doc(1000 + step)
            manifest = writer.update(upserts=[record], chunks=chunks, vectors=vectors, deletes=[f"d{step % 40}"],
                                     extra={"step": step})
            print("published", manifest.version, flush=True)
            if step % 3 == 0:
                manifest = writer.compact()  # type: ignore[assignment]
                print("compacted", manifest.version, flush=True)


if __name__ == "__main__":
    main()
