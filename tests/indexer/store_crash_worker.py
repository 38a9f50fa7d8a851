"""Publishes snapshots and caches embeddings in a loop until killed; driven by test_store's kill -9 test.

Usage: python store_crash_worker.py INDEX_DIR SEED

Prints `ready` once set up, then `published <snapshot-id> <iteration>` after each
publish has returned. Each snapshot's data is a pure function of (seed,
iteration), both kept in the manifest's `extra`, so the test can rebuild what
a snapshot must contain and compare.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

# Run as a script: make the project importable without installing it.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from indexer.models import Chunk  # noqa: E402
from indexer.store import DocumentRecord, IndexDirectory  # noqa: E402

MODEL = "crash-test-model"
DIMS = 32
#: Cache rows per put_many; a committed batch is all or nothing, so the count stays a multiple.
CACHE_BATCH = 40


def make_data(seed: int, iteration: int) -> tuple[list[DocumentRecord], list[Chunk], np.ndarray]:
    """The documents, chunks and unit vectors of one iteration; grows with `iteration` up to a cap."""
    rng = np.random.default_rng([seed, iteration])
    n_docs = min(10 + 12 * iteration, 300)
    documents: list[DocumentRecord] = []
    chunks: list[Chunk] = []
    for d in range(n_docs):
        doc_id = f"doc-{d}"
        ids = []
        for ordinal in range(int(rng.integers(1, 7))):
            text = f"seed {seed} iteration {iteration} document {d} part {ordinal}"
            chunk = Chunk(f"{doc_id}-{ordinal}", doc_id, ordinal, text, 0, len(text), 12, f"Doc {d}", ("Part",))
            chunks.append(chunk)
            ids.append(chunk.chunk_id)
        text = "\n".join(c.text for c in chunks[-len(ids) :])
        content_hash = f"h{seed}-{iteration}-{d}"
        documents.append(DocumentRecord(doc_id, f"gen/{d}.txt", content_hash, f"Doc {d}", {"i": d}, tuple(ids), text))
    vectors = rng.standard_normal((len(chunks), DIMS)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return documents, chunks, vectors


def main() -> None:
    root, seed = Path(sys.argv[1]), int(sys.argv[2])
    directory = IndexDirectory(root)
    with directory.writer(timeout=10) as writer:
        iteration = 0
        if directory.exists():
            with directory.open_current() as snapshot:
                iteration = int(snapshot.manifest.extra.get("iteration", -1)) + 1
        print("ready", flush=True)
        while True:
            documents, chunks, vectors = make_data(seed, iteration)
            writer.cache.put_many(
                MODEL, [(f"{seed}-{iteration}-{j}", vectors[j % len(vectors)]) for j in range(CACHE_BATCH)]
            )
            manifest = writer.publish(
                embedding_model=MODEL,
                dims=DIMS,
                documents=documents,
                chunks=chunks,
                vectors=vectors,
                extra={"seed": seed, "iteration": iteration},
            )
            print("published", manifest.snapshot, iteration, flush=True)
            iteration += 1


if __name__ == "__main__":
    main()
