"""Compare ways of fusing the dense and lexical lists on BEIR folders (nDCG@10 by document).

Each query's two candidate lists are fetched once from an index built by
`iorag eval DATASET --index DIR` (so nothing is embedded here), then every
fusion below ranks the same candidates. None of them has a per-dataset
parameter; `convex` shows what a fixed weight would do.

    python bench/fusion_compare.py ../shared/datasets/scifact:/tmp/eval/scifact \
                                   ../shared/datasets/squad-dev-even:/tmp/eval/squad
"""

from __future__ import annotations

import argparse
import asyncio
import math
import pickle
import sys
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from service import RagService, Settings
from service.evaluate import Dataset, documents_in_order, load_dataset, ndcg_at
from service.retrieval import LEXICAL_FLOOR, MIN_CANDIDATES, ScoredList, fuse_scores

Hits = list[tuple[str, str, float]]  # (chunk id, doc id, score), best first
Fusion = Callable[[Hits, Hits], list[str]]  # -> chunk ids, best first


def _fused(scores: dict[str, float]) -> list[str]:
    return sorted(scores, key=lambda c: (-scores[c], c))


def rrf(dense: Hits, lexical: Hits, k: int = 60) -> list[str]:
    scores: dict[str, float] = {}
    for hits in (dense, lexical):
        for rank, (cid, _, _) in enumerate(hits, start=1):
            scores[cid] = scores.get(cid, 0.0) + 1.0 / (k + rank)
    return _fused(scores)


def _combine(lists: Sequence[tuple[Hits, Callable[[np.ndarray], tuple[np.ndarray, float]], float]]) -> list[str]:
    """Sum of normalised scores; a chunk missing from a list gets that list's `missing` value."""
    per_list: list[tuple[dict[str, float], float, float]] = []
    for hits, normalise, weight in lists:
        if not hits:
            continue
        values, missing = normalise(np.array([s for _, _, s in hits], dtype=float))
        per_list.append(({cid: float(v) for (cid, _, _), v in zip(hits, values)}, missing, weight))
    ids = {cid for table, _, _ in per_list for cid in table}
    return _fused({cid: sum(w * table.get(cid, missing) for table, missing, w in per_list) for cid in ids})


def minmax(values: np.ndarray) -> tuple[np.ndarray, float]:
    span = values.max() - values.min()
    return ((values - values.min()) / span if span > 0 else np.ones_like(values)), 0.0


def zscore(values: np.ndarray) -> tuple[np.ndarray, float]:
    std = values.std()
    z = (values - values.mean()) / std if std > 0 else np.zeros_like(values)
    return z, float(z.min())


def dbsf(values: np.ndarray) -> tuple[np.ndarray, float]:
    """Distribution-based score fusion: mean +- 3 std mapped to 0..1."""
    low, high = values.mean() - 3 * values.std(), values.mean() + 3 * values.std()
    if high <= low:
        return np.ones_like(values), 0.0
    return np.clip((values - low) / (high - low), 0, 1), 0.0


def combo(normalise: Callable[[np.ndarray], tuple[np.ndarray, float]], w_dense: float = 0.5) -> Fusion:
    return lambda d, l: _combine([(d, normalise, w_dense), (l, normalise, 1 - w_dense)])


def _gap(values: np.ndarray) -> float:
    """How far a list's best stands out: (best - second) / (best - mean)."""
    if len(values) < 2 or values[0] <= values.mean():
        return 0.0
    return float((values[0] - values[1]) / (values[0] - values.mean()))


def adaptive(normalise: Callable[[np.ndarray], tuple[np.ndarray, float]], confidence: Callable[[np.ndarray], float]) -> Fusion:
    """Each list weighted by its own confidence on this query (weights sum to 1)."""

    def fuse(dense: Hits, lexical: Hits) -> list[str]:
        conf = [confidence(np.array([s for _, _, s in h], dtype=float)) if h else 0.0 for h in (dense, lexical)]
        total = sum(conf)
        weights = [c / total for c in conf] if total > 0 else [0.5, 0.5]
        return _combine([(dense, normalise, weights[0]), (lexical, normalise, weights[1])])

    return fuse


def _top_z(values: np.ndarray) -> float:
    """How many standard deviations the best score lies above the list's mean."""
    if len(values) < 2 or values.std() == 0:
        return 0.0
    z = (values[0] - values.mean()) / values.std()
    return max(float(z), 0.0)


def _excess_top_z(values: np.ndarray) -> float:
    """The best score's z less the z the best of that many pure-noise draws would reach, sqrt(2 ln n)."""
    if len(values) < 2 or values.std() == 0:
        return 0.0
    z = (values[0] - values.mean()) / values.std()
    return max(float(z - math.sqrt(2 * math.log(len(values)))), 0.0)


def library_default(dense: Hits, lexical: Hits) -> list[str]:
    fused = fuse_scores(
        [
            ScoredList([(cid, s) for cid, _, s in dense], MIN_CANDIDATES),
            ScoredList([(cid, s) for cid, _, s in lexical], MIN_CANDIDATES, floor=LEXICAL_FLOOR),
        ]
    )
    return [cid for cid, _ in fused]


FUSIONS: dict[str, Fusion] = {
    "rrf (k=60)": rrf,
    "min-max sum": combo(minmax),
    "z-score sum": combo(zscore),
    "dbsf": combo(dbsf),
    "convex min-max 0.3 dense": combo(minmax, 0.3),
    "convex min-max 0.7 dense": combo(minmax, 0.7),
    "min-max, gap-weighted": adaptive(minmax, _gap),
    "z-score, gap-weighted": adaptive(zscore, _gap),
    "min-max, top-z-weighted": adaptive(minmax, _top_z),
    "z-score, top-z-weighted": adaptive(zscore, _top_z),
    "dbsf, gap-weighted": adaptive(dbsf, _gap),
    "min-max, excess-top-z-weighted": adaptive(minmax, _excess_top_z),
    "z-score, excess-top-z-weighted": adaptive(zscore, _excess_top_z),
    "iorag default (min-max, top-z-weighted; BM25 floor 0)": library_default,
}


async def candidate_lists(dataset: Dataset, index_dir: str, depth: int) -> dict[str, tuple[Hits, Hits]]:
    out: dict[str, tuple[Hits, Hits]] = {}
    async with RagService(Settings(index_dir=Path(index_dir), reload_interval=0)) as service:
        retriever = await service.retriever()
        for qid, text in dataset.queries.items():
            dense = await retriever.search(text, depth, "dense")
            lexical = await retriever.search(text, depth, "lexical")
            out[qid] = (
                [(h.chunk.chunk_id, h.chunk.doc_id, h.score) for h in dense],
                [(h.chunk.chunk_id, h.chunk.doc_id, h.score) for h in lexical],
            )
    return out


def noise_like(dense: Hits, all_chunks: list[tuple[str, str]], rng: np.random.Generator) -> Hits:
    """A dense list from vectors that know nothing: random chunks, scores like cosines of random 32-d vectors."""
    picks = rng.choice(len(all_chunks), size=min(len(dense), len(all_chunks)), replace=False)
    scores = np.sort(rng.normal(0.0, 1 / math.sqrt(32), size=len(picks)))[::-1]
    return [(all_chunks[i][0], all_chunks[i][1], float(s)) for i, s in zip(picks, scores)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("pairs", nargs="+", help="DATASET_DIR:INDEX_DIR")
    parser.add_argument("--depth", type=int, default=MIN_CANDIDATES, help="candidates per list")
    parser.add_argument("--cache", type=Path, help="keep the fetched lists here (a pickle per dataset)")
    parser.add_argument("--noise", action="store_true", help="also score with the dense list replaced by noise")
    args = parser.parse_args()
    table: dict[str, dict[str, float]] = {}
    names = []
    for pair in args.pairs:
        dataset_dir, index_dir = pair.split(":", 1)
        dataset = load_dataset(dataset_dir)
        cached = args.cache / f"{dataset.name}-{args.depth}.pkl" if args.cache else None
        if cached and cached.exists():
            lists = pickle.loads(cached.read_bytes())
        else:
            lists = asyncio.run(candidate_lists(dataset, index_dir, args.depth))
            if cached:
                cached.parent.mkdir(parents=True, exist_ok=True)
                cached.write_bytes(pickle.dumps(lists))
        doc_of = {cid: doc for d, l in lists.values() for cid, doc, _ in d + l}
        variants = [(dataset.name, lists)]
        if args.noise:
            rng = np.random.default_rng(0)
            every = sorted(doc_of.items())
            variants.append(
                (f"{dataset.name}, noise dense", {q: (noise_like(d, every, rng), l) for q, (d, l) in lists.items()})
            )
        for name, per_query in variants:
            names.append(name)

            def score(rank: Callable[[Hits, Hits], list[str]]) -> float:
                total = 0.0
                for qid, (dense, lexical) in per_query.items():
                    ranked = documents_in_order([doc_of[c] for c in rank(dense, lexical)])
                    total += ndcg_at(ranked, dataset.qrels[qid], 10)
                return round(total / len(per_query), 4)

            table.setdefault("dense", {})[name] = score(lambda d, l: [c for c, _, _ in d])
            table.setdefault("lexical", {})[name] = score(lambda d, l: [c for c, _, _ in l])
            for fusion, func in FUSIONS.items():
                table.setdefault(fusion, {})[name] = score(func)
            print(f"{name}: {len(per_query)} queries", file=sys.stderr)
    print("| fusion | " + " | ".join(names) + " |")
    print("|---|" + "---:|" * len(names))
    for fusion, row in table.items():
        print(f"| {fusion} | " + " | ".join(f"{row[n]:.4f}" for n in names) + " |")


if __name__ == "__main__":
    main()
