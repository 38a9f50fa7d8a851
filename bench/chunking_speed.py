"""Chunking cost alone: chunks per second of CPU on synthetic and real text, and a digest of the output.

    .venv/bin/python bench/chunking_speed.py [--docs 4000] [--repeat 3] [--json out.json]

Cuts the same synthetic 180-word documents as `bench/scale.py` (imported from it)
and the SciFact abstracts (title as the document title) with `chunk_document`,
under the exact WordPiece counter (BERT uncased, as the local model and
`bench/scale.py` use) and under the cl100k estimate for gemma, at 512 tokens
(the pipeline's default chunk size) and, on SciFact, at 128 (several chunks per
abstract, so the sentence-packing path runs on real prose). For each it prints chunks per CPU
second (CPU time, because the machine is shared) of the first pass and of the best of
`--repeat`, and a digest of every chunk's (id, start, end, tokens, header), so two
checkouts can be compared for identical output:

    IORAG_BENCH_SOURCE=/path/to/older/checkout .venv/bin/python bench/chunking_speed.py

CPU time still moves with the load of a shared machine; instructions do not. Under
valgrind, the difference between two document counts gives instructions per document:

    valgrind --tool=cachegrind --cache-sim=no --cachegrind-out-file=/dev/null \
        .venv/bin/python bench/chunking_speed.py --corpora synthetic --counters bert-uncased --repeat 1 --docs 400
    (again with --docs 200; instructions per document = difference / 200)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

#: Which iorag to measure: this checkout, or another one's root (to measure an older version).
SOURCE = Path(os.environ.get("IORAG_BENCH_SOURCE", Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(SOURCE))
sys.path.insert(1, str(Path(__file__).resolve().parent))

from scale import document_text  # noqa: E402

from indexer.chunking import ChunkingConfig, chunk_document  # noqa: E402
from indexer.models import Document  # noqa: E402
from indexer.tokens import counter_for_family  # noqa: E402

SCIFACT = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "scifact" / "corpus.jsonl"


def synthetic(count: int) -> list[Document]:
    return [Document(id=f"doc-{i}", text=document_text(i), title=f"Document {i}") for i in range(count)]


def scifact(path: Path) -> list[Document]:
    documents = []
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            row = json.loads(line)
            documents.append(Document(id=row["_id"], text=row["text"], title=row["title"]))
    return documents


def measure(documents: list[Document], family: str, max_tokens: int, repeat: int) -> dict[str, Any]:
    counter = counter_for_family(family)
    config = ChunkingConfig(max_tokens)
    counter.count("warm up")
    seconds = []
    digest = hashlib.sha256()
    chunks = 0
    for round_ in range(repeat):
        started = time.process_time()
        cut = [chunk_document(doc, counter, config) for doc in documents]
        seconds.append(time.process_time() - started)
        if round_ == 0:
            for doc_chunks in cut:
                for c in doc_chunks:
                    digest.update(f"{c.chunk_id}\t{c.start}\t{c.end}\t{c.tokens}\t{c.header}\n".encode())
                    chunks += 1
    return {
        "counter": counter.name,
        "max_tokens": max_tokens,
        "documents": len(documents),
        "chunks": chunks,
        "cpu_seconds_first": round(seconds[0], 3),
        "cpu_seconds_best": round(min(seconds), 3),
        # The first pass meets every word for the first time (nothing remembered yet).
        "chunks_per_cpu_second_first": round(chunks / seconds[0]),
        "chunks_per_cpu_second": round(chunks / min(seconds)),
        "digest": digest.hexdigest()[:16],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--docs", type=int, default=4000, help="synthetic documents (two chunks each)")
    parser.add_argument("--repeat", type=int, default=3, help="rounds per corpus; the fastest counts")
    parser.add_argument("--scifact", type=Path, default=SCIFACT, help="SciFact corpus.jsonl")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--corpora", default="synthetic,scifact", help="which corpora (comma-separated)")
    parser.add_argument("--counters", default="bert-uncased,gemma", help="which tokenizer families")
    args = parser.parse_args()

    names = args.corpora.split(",")
    corpora = {"synthetic": synthetic(args.docs) if "synthetic" in names else []}
    corpora["scifact"] = scifact(args.scifact) if "scifact" in names else []
    results = []
    print("| corpus | counter | max tokens | documents | chunks | chunks / CPU s, first pass | best pass | output digest |")
    print("|---|---|---:|---:|---:|---:|---:|---|")
    for name, max_tokens in (("synthetic", 512), ("scifact", 512), ("scifact", 128)):
        if name not in names:
            continue
        for family in args.counters.split(","):
            row = {"corpus": name, **measure(corpora[name], family, max_tokens, args.repeat)}
            results.append(row)
            print(
                f"| {name} | {row['counter']} | {max_tokens} | {row['documents']} | {row['chunks']} "
                f"| {row['chunks_per_cpu_second_first']:,} | {row['chunks_per_cpu_second']:,} | `{row['digest']}` |",
                flush=True,
            )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
