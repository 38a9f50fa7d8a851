"""Quality on BEIR-format datasets: retrieval (nDCG@10, recall@10/100, MRR@10) and, where
the folder has `answers.jsonl`, answers (do they contain an annotated answer?).

`run_evaluation` is the whole `iorag eval`: index the corpus, score each search
mode, score answers; the command line only parses options and prints.
"""

from __future__ import annotations

import json
import math
import random
import re
import string
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from indexer import ConfigError, Indexer, sentence_spans

from .answer import EXTRACTIVE_MODEL
from .config import Settings
from .rag import RagService
from .retrieval import MODES, Mode

#: Chunks fetched per query: enough distinct documents for recall@100.
CHUNK_DEPTH = 300


@dataclass(frozen=True)
class Dataset:
    """A BEIR folder: corpus.jsonl, queries.jsonl and qrels/test.tsv."""

    name: str
    corpus: Path
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]
    #: Annotated answers per query id, from answers.jsonl (empty when the folder has none).
    answers: dict[str, list[str]] = field(default_factory=dict)


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
    answers = _load_answers(root / "answers.jsonl", queries) if (root / "answers.jsonl").is_file() else {}
    return Dataset(root.resolve().name, corpus, queries, qrels, answers)


def _load_answers(path: Path, queries: Mapping[str, str]) -> dict[str, list[str]]:
    """`{"_id", "answers": [...]}` per line; only judged queries with a non-empty answer are kept."""
    answers: dict[str, list[str]] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            query_id, texts = str(record["_id"]), [str(a) for a in record["answers"]]
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"{path}:{number}: expected {{\"_id\", \"answers\": [...]}} ({exc})") from exc
        texts = [t for t in texts if normalize_answer(t)]
        if query_id in queries and texts:
            answers[query_id] = texts
    return answers


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


# -- answers -------------------------------------------------------------------------

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = str.maketrans("", "", string.punctuation)
_CITATION = re.compile(r"\s*\[\d+(?:\s*,\s*\d+)*\]")
#: Questions whose answers are scored by default: enough for a share within about
#: +-3 points, quick offline. `answer_sample=0` scores every question.
ANSWER_SAMPLE = 1000


def normalize_answer(text: str) -> str:
    """SQuAD's normalisation: lower-case, no punctuation, no articles, single spaces."""
    return " ".join(_ARTICLES.sub(" ", text.lower().translate(_PUNCTUATION)).split())


def contains_answer(text: str, answers: Sequence[str]) -> bool:
    """True when `text` holds one of `answers` as whole words, after `normalize_answer`."""
    padded = f" {normalize_answer(text)} "
    return any(f" {normalize_answer(a)} " in padded for a in answers if normalize_answer(a))


def first_sentence(answer: str) -> str:
    """The answer's first sentence, citation markers removed."""
    text = _CITATION.sub("", answer)
    spans = sentence_spans(text)
    return text[spans[0][0] : spans[0][1]] if spans else ""


def _percentile(values: Sequence[int], share: float) -> int:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else 0


async def evaluate_answers(
    service: RagService,
    dataset: Dataset,
    *,
    sample: int = ANSWER_SAMPLE,
    model: str = EXTRACTIVE_MODEL,
    seed: int = 0,
) -> dict[str, Any]:
    """Shares of answers that contain an annotated answer (whole, first sentence, top source) and lengths.

    Args:
        service: answers with its default search mode and top-k.
        dataset: must have answers.
        sample: how many questions, drawn with `seed` (0 or more than there are: all).
        model: the chat model, offline extractive by default.

    Returns:
        `{"questions", "contains", "first_sentence", "top_source", "chars_p50", "chars_p90"}`.
    """
    ids = sorted(dataset.answers)
    if 0 < sample < len(ids):
        ids = sorted(random.Random(seed).sample(ids, sample))
    hits = {"contains": 0, "first_sentence": 0, "top_source": 0}
    lengths: list[int] = []
    for query_id in ids:
        question, wanted = dataset.queries[query_id], dataset.answers[query_id]
        answer = await service.aask(question, model=model)
        top = await service.asearch(question, 1)
        hits["contains"] += contains_answer(_CITATION.sub("", answer.answer), wanted)
        hits["first_sentence"] += contains_answer(first_sentence(answer.answer), wanted)
        hits["top_source"] += bool(top) and contains_answer(top[0].chunk.text, wanted)
        lengths.append(len(answer.answer))
    count = max(1, len(ids))
    return {
        "questions": len(ids),
        **{name: round(value / count, 4) for name, value in hits.items()},
        "chars_p50": _percentile(lengths, 0.5),
        "chars_p90": _percentile(lengths, 0.9),
    }


async def run_evaluation(
    settings: Settings,
    dataset: Dataset,
    indexer: Indexer,
    *,
    modes: Sequence[Mode] = MODES,
    depth: int = CHUNK_DEPTH,
    answer_sample: int = ANSWER_SAMPLE,
    answer_model: str = EXTRACTIVE_MODEL,
) -> dict[str, Any]:
    """Index the dataset's corpus with `indexer` (into `settings.index_dir`), then score it.

    Returns:
        The `iorag eval --json` summary: dataset, queries, documents, chunks,
        embedding_model, index_seconds, total_seconds, modes, and `answers`
        when the dataset has them.
    """
    started = time.monotonic()
    try:
        report = await indexer.aindex([str(dataset.corpus)])
    finally:
        await indexer.aclose()
    index_seconds = time.monotonic() - started
    summary: dict[str, Any] = {
        "dataset": dataset.name,
        "queries": len(dataset.queries),
        "documents": report.documents,
        "chunks": report.chunks,
        "embedding_model": report.embedding_model,
        "index_seconds": round(index_seconds, 1),
    }
    async with RagService(settings) as service:
        summary["modes"] = await evaluate(service, dataset, modes, depth=depth)
        if dataset.answers:
            summary["answers"] = await evaluate_answers(service, dataset, sample=answer_sample, model=answer_model)
    summary["total_seconds"] = round(time.monotonic() - started, 1)
    return summary
