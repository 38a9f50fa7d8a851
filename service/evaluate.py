"""Retrieval quality on BEIR-format datasets: nDCG@10, recall@10, recall@100, MRR@10."""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

from indexer.errors import ConfigError

from .rag import RagService
from .retrieval import Mode

#: Chunks fetched per query: enough distinct documents for recall@100.
CHUNK_DEPTH = 300


@dataclass(frozen=True)
class Dataset:
    """A BEIR folder: corpus.jsonl, queries.jsonl and qrels/test.tsv."""

    name: str
    corpus: Path
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]


def load_dataset(folder: str | Path) -> Dataset:
    """Read a BEIR-format folder; only queries with judgments are kept.

    Raises:
        ConfigError: a missing file or a malformed line, named.
    """
    root = Path(folder)
    corpus, queries_file, qrels_file = root / "corpus.jsonl", root / "queries.jsonl", root / "qrels" / "test.tsv"
    for path in (corpus, queries_file, qrels_file):
        if not path.is_file():
            raise ConfigError(f"{path} is missing", hint="DATASET_DIR must hold corpus.jsonl, queries.jsonl and qrels/test.tsv")
    qrels: dict[str, dict[str, int]] = {}
    for number, line in enumerate(qrels_file.read_text(encoding="utf-8").splitlines(), start=1):
        fields = line.strip().split("\t")
        if not line.strip() or fields[0] == "query-id":
            continue
        if len(fields) != 3:
            raise ConfigError(f"{qrels_file}:{number}: expected query-id, corpus-id, score")
        qrels.setdefault(fields[0], {})[fields[1]] = int(fields[2])
    queries: dict[str, str] = {}
    for number, line in enumerate(queries_file.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            query_id, text = str(record["_id"]), str(record["text"])
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"{queries_file}:{number}: not a BEIR query line ({exc})") from exc
        if query_id in qrels:
            queries[query_id] = text
    if not queries:
        raise ConfigError(f"{root}: no query has relevance judgments in qrels/test.tsv")
    return Dataset(root.resolve().name, corpus, queries, qrels)


def ndcg_at(ranked: Sequence[str], relevant: Mapping[str, int], k: int) -> float:
    gains = sum((2 ** relevant.get(d, 0) - 1) / math.log2(i + 2) for i, d in enumerate(ranked[:k]))
    ideal = sorted(relevant.values(), reverse=True)[:k]
    best = sum((2**g - 1) / math.log2(i + 2) for i, g in enumerate(ideal))
    return gains / best if best > 0 else 0.0


def recall_at(ranked: Sequence[str], relevant: Mapping[str, int], k: int) -> float:
    wanted = {d for d, g in relevant.items() if g > 0}
    return len(wanted.intersection(ranked[:k])) / len(wanted) if wanted else 0.0


def mrr_at(ranked: Sequence[str], relevant: Mapping[str, int], k: int) -> float:
    for i, doc_id in enumerate(ranked[:k]):
        if relevant.get(doc_id, 0) > 0:
            return 1.0 / (i + 1)
    return 0.0


def documents_in_order(chunk_doc_ids: Sequence[str]) -> list[str]:
    """Document ids in the order of their best chunk."""
    return list(dict.fromkeys(chunk_doc_ids))


async def evaluate(
    service: RagService, dataset: Dataset, modes: Sequence[Mode], *, depth: int = CHUNK_DEPTH
) -> dict[str, dict[str, float]]:
    """Mean metrics per search mode over the dataset's judged queries."""
    results: dict[str, dict[str, float]] = {}
    for mode in modes:
        totals = {"ndcg@10": 0.0, "recall@10": 0.0, "recall@100": 0.0, "mrr@10": 0.0}
        started = time.monotonic()
        for query_id, text in dataset.queries.items():
            hits = await service.asearch(text, depth, mode)
            ranked = documents_in_order([hit.chunk.doc_id for hit in hits])
            relevant = dataset.qrels[query_id]
            totals["ndcg@10"] += ndcg_at(ranked, relevant, 10)
            totals["recall@10"] += recall_at(ranked, relevant, 10)
            totals["recall@100"] += recall_at(ranked, relevant, 100)
            totals["mrr@10"] += mrr_at(ranked, relevant, 10)
        seconds = time.monotonic() - started
        count = len(dataset.queries)
        metrics = {name: round(value / count, 4) for name, value in totals.items()}
        metrics["queries_per_second"] = round(count / seconds, 1) if seconds > 0 else 0.0
        results[mode] = metrics
    return results
