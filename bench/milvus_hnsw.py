"""HNSW on a Milvus server: recall@10 against exact search and search latency, by ef.

Starts the Milvus 2.3 standalone server of the `milvus` package (the test
dependency; see tests/milvus_server.py) on free loopback ports, publishes a
snapshot of N clustered unit vectors (a Gaussian mixture) through iorag's
writer, so the collection gets exactly the index iorag builds, then queries it
with the ef values given. Exact neighbours come from numpy. Prints a markdown table.

    python bench/milvus_hnsw.py --vectors 20000 --dims 64 --ef 16 32 64 128

Nothing leaves the machine; the server's data goes to a temporary directory.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from indexer.store import IndexDirectory  # noqa: E402
from indexer.store.backends import DenseTarget  # noqa: E402
from indexer.store.snapshot import DocumentRecord  # noqa: E402
from indexer.models import Chunk  # noqa: E402
from tests.milvus_server import MilvusServerProcess  # noqa: E402


def clustered(n: int, queries: int, dims: int, centers: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    means = rng.standard_normal((centers, dims)).astype(np.float32)

    def draw(count: int) -> np.ndarray:
        if centers == 0:  # no clusters: uniform on the sphere, the hard case for a graph index
            points = rng.standard_normal((count, dims)).astype(np.float32)
            return points / np.linalg.norm(points, axis=1, keepdims=True)
        points = means[rng.integers(0, centers, count)] + 0.35 * rng.standard_normal((count, dims)).astype(np.float32)
        return points / np.linalg.norm(points, axis=1, keepdims=True)

    return draw(n), draw(queries)


def corpus(n: int) -> tuple[list[DocumentRecord], list[Chunk]]:
    chunks = [Chunk(f"c{i}", f"d{i}", 0, f"chunk {i}", 0, 8, 2, "", ()) for i in range(n)]
    documents = [DocumentRecord(f"d{i}", "bench", f"h{i}", "", {}, (f"c{i}",), f"chunk {i}") for i in range(n)]
    return documents, chunks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vectors", type=int, default=20_000)
    parser.add_argument("--dims", type=int, default=64)
    parser.add_argument("--centers", type=int, default=40, help="mixture components; 0: no clusters")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--ef", type=int, nargs="+", default=[16, 32, 64, 128])
    args = parser.parse_args()

    vectors, queries = clustered(args.vectors, args.queries, args.dims, args.centers, seed=3)
    exact = np.argsort(-(queries @ vectors.T), axis=1)[:, :10] + 1  # row ids start at 1
    with tempfile.TemporaryDirectory() as tmp:
        server = MilvusServerProcess(Path(tmp) / "server", ROOT / ".pytest_cache" / "d" / "milvus-server")
        (Path(tmp) / "server").mkdir()
        server.start()
        try:
            print(f"server up in {server.startup_seconds:.1f} s", file=sys.stderr)
            directory = IndexDirectory(Path(tmp) / "index", milvus_token=server.token)
            documents, chunks = corpus(args.vectors)
            started = time.monotonic()
            with directory.writer() as writer:
                manifest = writer.publish(embedding_model="bench", dims=args.dims, documents=documents,
                                          chunks=chunks, vectors=vectors, dense=DenseTarget("milvus", server.uri))
            publish = time.monotonic() - started
            print(f"published {args.vectors} vectors in {publish:.1f} s: {manifest.dense['index']}", file=sys.stderr)
            from indexer.store.milvus import MilvusDense

            print("| ef | recall@10 | ms per query (one at a time, p50) |")
            print("|---:|---:|---:|")
            for ef in args.ef:
                index = {**manifest.dense["index"], "ef": ef}
                dense = MilvusDense(server.uri, manifest.dense["collection"], index=index, token=server.token)
                try:
                    _, ids = dense.search(queries, 10)
                    times = []
                    for query in queries[:100]:
                        begun = time.perf_counter()
                        dense.search(query[None, :], 10)
                        times.append((time.perf_counter() - begun) * 1000)
                finally:
                    dense.close()
                recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids.tolist(), exact.tolist())])
                print(f"| {ef} | {recall:.3f} | {np.median(times):.1f} |")
        finally:
            server.stop()


if __name__ == "__main__":
    main()
