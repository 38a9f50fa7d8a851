"""Embedding throughput under a rate-limit storm, against the fake IO Intelligence API on loopback.

Embeds N synthetic chunks (deterministic, varied lengths, none over the
model's limit) with iorag's RemoteEmbedder, then, in the same run and against
the same faults, with a naive client (batches of 10, one request at a time,
the same retry policy) and, when `llama_index.embeddings.openai` is
importable, LlamaIndex's OpenAIEmbedding with default settings. Prints a
markdown table: successful / failed-and-retried / total requests, tokens,
wall time, the fewest requests the batch limits allow and the ratio to it,
and whether every chunk came back exactly once.

    python bench/embed_throughput.py --chunks 5000 --latency 0.2 --rate-429 0.3 --rate-503 0.05

Nothing leaves the machine: the fake listens on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import random
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from indexer.api import ClientConfig, IOIntelligenceClient  # noqa: E402
from indexer.catalog import default_catalog  # noqa: E402
from indexer.embedding import plan_batches  # noqa: E402
from indexer.remote import RemoteEmbedder, default_batch_tokens  # noqa: E402
from indexer.tokens import TokenCounter, counter_for  # noqa: E402
from tests.fakeapi import GEMMA, FakeConfig, FakeServer, text_hash  # noqa: E402

KEY = "bench-key"
_VOCAB = (
    "the of and to in is that for it as with was on be by this are from at or an which have not has but were "
    "their one all been more when there river network embedding gateway latency retrieval index chunk token "
    "model answer source document harbour engine protocol mountain capital archive ledger signal"
).split()


@dataclass
class Row:
    name: str
    ok: int
    failed: int
    tokens: int
    wall: float
    exactly_once: bool
    note: str = ""

    @property
    def total(self) -> int:
        return self.ok + self.failed


def synthetic_chunks(n: int, counter: TokenCounter, limit: int, seed: int) -> list[str]:
    """n unique chunks, lengths log-uniform from ~20 tokens to the limit, trimmed to fit it."""
    rng = random.Random(seed)
    chunks = []
    for i in range(n):
        target = int(math.exp(rng.uniform(math.log(20), math.log(limit))))
        words = [f"chunk-{i}"]
        for _ in range(max(1, int(target * 0.8))):
            roll = rng.random()
            words.append(str(rng.randrange(10, 99_999)) if roll < 0.05 else rng.choice(_VOCAB))
        text = " ".join(words)
        while counter.count(text) > limit:
            words = words[: int(len(words) * 0.95)]
            text = " ".join(words)
        chunks.append(text)
    return chunks


def exactly_once(fake: FakeServer, texts: list[str]) -> bool:
    return fake.log.embedded_counts() == Counter(text_hash(t) for t in texts)


def fake_counts(fake: FakeServer) -> tuple[int, int, int]:
    records = fake.log.of("embeddings")
    ok = [r for r in records if r.ok]
    return len(ok), len(records) - len(ok), sum(sum(r.tokens) for r in ok)


def client_config(fake: FakeServer, args: argparse.Namespace, concurrency: int) -> ClientConfig:
    return ClientConfig(
        base_url=fake.base_url,
        concurrency=concurrency,
        max_retries=args.max_retries,
        backoff_base=args.backoff_base,
        timeout=args.timeout,
    )


async def run_iorag(fake: FakeServer, texts: list[str], args: argparse.Namespace) -> tuple[Row, str]:
    model = default_catalog().get(args.model, kind="embedding")
    async with IOIntelligenceClient(KEY, client_config(fake, args, args.concurrency)) as client:
        embedder = RemoteEmbedder(client, model)
        started = time.perf_counter()
        await embedder.embed_batch(texts)
        wall = time.perf_counter() - started
    ok, failed, tokens = fake_counts(fake)
    stats = client.stats
    note = f"429s {stats.rate_limited}, 5xx {stats.server_errors}, limit min {stats.min_concurrency}/end {stats.concurrency}"
    return Row("iorag RemoteEmbedder", ok, failed, tokens, wall, exactly_once(fake, texts), note), (
        f"batch limits: {embedder.max_batch_items} inputs, {embedder.max_batch_tokens} tokens; "
        f"counter {embedder.counter.name}; retry wait {stats.retry_wait:.1f} s"
    )


async def run_naive(fake: FakeServer, texts: list[str], args: argparse.Namespace) -> Row:
    async with IOIntelligenceClient(KEY, client_config(fake, args, 1)) as client:
        started = time.perf_counter()
        for start in range(0, len(texts), args.naive_batch):
            await client.embeddings(args.model, texts[start : start + args.naive_batch])
        wall = time.perf_counter() - started
    ok, failed, tokens = fake_counts(fake)
    note = f"batches of {args.naive_batch}, sequential, same retry policy"
    return Row("naive client", ok, failed, tokens, wall, exactly_once(fake, texts), note)


def run_llamaindex(fake: FakeServer, texts: list[str], args: argparse.Namespace) -> Row | str:
    try:
        from llama_index.embeddings.openai import OpenAIEmbedding  # type: ignore[import-not-found]
    except ImportError:
        return "LlamaIndex skipped: `llama_index.embeddings.openai` is not installed"
    try:
        embedder = OpenAIEmbedding(model_name=args.model, api_key=KEY, api_base=fake.base_url)
    except Exception as exc:  # its model-name checks differ between versions
        return f"LlamaIndex skipped: OpenAIEmbedding refused the setup ({type(exc).__name__}: {exc})"
    started = time.perf_counter()
    try:
        embedder.get_text_embedding_batch(texts)
        note = "OpenAIEmbedding defaults"
    except Exception as exc:
        note = f"failed: {type(exc).__name__}: {str(exc)[:80]}"
    wall = time.perf_counter() - started
    ok, failed, tokens = fake_counts(fake)
    return Row("LlamaIndex OpenAIEmbedding", ok, failed, tokens, wall, exactly_once(fake, texts), note)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chunks", type=int, default=5000)
    parser.add_argument("--latency", type=float, default=0.2, help="seconds the fake adds to every call")
    parser.add_argument("--latency-per-1k", type=float, default=0.0, help="extra seconds per 1,000 tokens of a call")
    parser.add_argument("--rate-429", type=float, default=0.3, help="share of calls answered 429 (no Retry-After)")
    parser.add_argument("--rate-503", type=float, default=0.05)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--model", default=GEMMA)
    parser.add_argument("--max-retries", type=int, default=10)
    parser.add_argument("--backoff-base", type=float, default=ClientConfig.backoff_base)
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--naive-batch", type=int, default=10)
    parser.add_argument("--skip-naive", action="store_true")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        os.environ.pop(name, None)  # loopback only

    model = default_catalog().get(args.model, kind="embedding")
    counter = counter_for(model)
    limit = model.embedding_limit or 512
    texts = synthetic_chunks(args.chunks, counter, limit, args.seed)
    counts = counter.count_many(texts)
    bound = len(plan_batches(counts, 128, default_batch_tokens(model)))
    faults = dict(latency=args.latency, latency_per_1k_tokens=args.latency_per_1k, rate_429=args.rate_429,
                  retry_after_share=0.0, rate_503=args.rate_503, seed=args.seed)

    rows: list[Row] = []
    notes: list[str] = []
    with FakeServer(FakeConfig(api_key=KEY, **faults)) as fake:
        fake.reset(FakeConfig(api_key=KEY, **faults))
        row, detail = asyncio.run(run_iorag(fake, texts, args))
        rows.append(row)
        notes.append(detail)
        if args.skip_naive:
            notes.append("naive client skipped (--skip-naive)")
        else:
            fake.reset(FakeConfig(api_key=KEY, **faults))
            rows.append(asyncio.run(run_naive(fake, texts, args)))
        fake.reset(FakeConfig(api_key=KEY, **faults))
        outcome = run_llamaindex(fake, texts, args)
        if isinstance(outcome, Row):
            rows.append(outcome)
        else:
            notes.append(outcome)

    print(f"## Embedding throughput: {args.chunks} chunks of {args.model}")
    print()
    print(f"{sum(counts):,} tokens ({counter.name}), {min(counts)}-{max(counts)} per chunk; fake latency "
          f"{args.latency:g} s, 429 rate {args.rate_429:g} (no Retry-After), 503 rate {args.rate_503:g}, "
          f"concurrency {args.concurrency}, max retries {args.max_retries}, backoff base {args.backoff_base:g} s.")
    print(f"Fewest requests the batch limits allow: {bound}.")
    print()
    print("| client | requests ok | failed (retried) | total | API tokens | ok / fewest | wall s | chunks/s | exactly once | notes |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|---|")
    for r in rows:
        print(f"| {r.name} | {r.ok} | {r.failed} | {r.total} | {r.tokens:,} | {r.ok / bound:.2f} | "
              f"{r.wall:.1f} | {len(texts) / r.wall:.0f} | {'yes' if r.exactly_once else 'NO'} | {r.note} |")
    print()
    for note in notes:
        print(f"- {note}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
