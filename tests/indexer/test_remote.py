"""RemoteEmbedder against the fake API on loopback: limits, batching, the 400-split path,
queries, and the rate-limit-storm acceptance target (exactly once, within limits, few requests)."""

from __future__ import annotations

import logging
import random
import re
from collections import Counter
from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from indexer.api import ClientConfig, IOIntelligenceClient
from indexer.catalog import default_catalog
from indexer.embedding import normalize, plan_batches
from indexer.errors import ConfigError, EmbeddingError, QuotaExhaustedError
from indexer.remote import RemoteEmbedder, default_batch_tokens, split_near_middle
from indexer.tokens import TokenCounter, counter_for
from tests.fakeapi import GEMMA, MXBAI, FakeServer, count_embedding_tokens, fake_vector, text_hash

pytestmark = pytest.mark.anyio

CATALOG = default_catalog()
GEMMA_INFO = CATALOG.get(GEMMA)
MXBAI_INFO = CATALOG.get(MXBAI)
GEMMA_COUNTER = counter_for(GEMMA_INFO)

_WORDS = (
    "the of and to in is that for it as with was on be by this are from at or an which have not has but "
    "were their one all been more when there river network embedding quota gateway latency retrieval index "
    "chunk token model answer source document paris france capital mountain harbour engine protocol"
).split()






def client_for(fake: FakeServer, **changes: Any) -> IOIntelligenceClient:
    settings: dict[str, Any] = {"base_url": fake.base_url, "backoff_base": 0.002, "timeout": 5.0}
    settings.update(changes)
    return IOIntelligenceClient("test-key", ClientConfig(**settings))


def words(rng: random.Random, n: int) -> list[str]:
    out = []
    for _ in range(n):
        roll = rng.random()
        if roll < 0.06:
            out.append(str(rng.randrange(10, 99_999)))
        elif roll < 0.09:
            out.append(rng.choice(_WORDS) + ".")
        else:
            out.append(rng.choice(_WORDS))
    return out


def text_near(counter: TokenCounter, target: int, seed: int, label: str = "") -> str:
    """The longest prefix of a deterministic word stream whose count is <= target."""
    rng = random.Random(seed)
    stream = [label] + words(rng, target + 50) if label else words(rng, target + 50)
    low, high = 1, len(stream)
    while low < high:
        middle = (low + high + 1) // 2
        if counter.count(" ".join(stream[:middle])) <= target:
            low = middle
        else:
            high = middle - 1
    return " ".join(stream[:low])


def corpus(n: int, seed: int = 7) -> list[str]:
    """n unique texts of varied length for gemma: mostly short, some long, a few at the limit."""
    rng = random.Random(seed)
    texts = []
    for i in range(n):
        roll = rng.random()
        if roll < 0.04:
            texts.append(text_near(GEMMA_COUNTER, rng.randint(3_900, 4_096), seed * 1_000 + i, f"chunk-{i}"))
            continue
        count = rng.randint(10, 300) if roll < 0.75 else rng.randint(300, 1_200)
        texts.append(f"chunk-{i} " + " ".join(words(rng, count)))
    return texts


def unit_rows(vectors: np.ndarray) -> bool:
    return bool(np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5))


def expected_rows(model: str, texts: list[str], dims: int) -> np.ndarray:
    return normalize(np.vstack([fake_vector(model, t, dims) for t in texts]))


# --- construction -------------------------------------------------------------------------


async def test_default_batch_limits_and_bad_settings(fake: FakeServer) -> None:
    assert default_batch_tokens(GEMMA_INFO) == 32_768
    assert default_batch_tokens(MXBAI_INFO) == 16_384
    async with client_for(fake, concurrency=3) as client:
        embedder = RemoteEmbedder(client, GEMMA_INFO)
        assert (embedder.max_batch_items, embedder.max_batch_tokens, embedder.concurrency) == (128, 32_768, 3)
        assert embedder.counter.name == GEMMA_COUNTER.name
        with pytest.raises(ConfigError, match="below"):
            RemoteEmbedder(client, GEMMA_INFO, max_batch_tokens=2_000)
        with pytest.raises(ConfigError, match="not an embedding model"):
            RemoteEmbedder(client, CATALOG.get("meta-llama/Llama-3.3-70B-Instruct"))


async def test_aclose_closes_only_an_owned_client(fake: FakeServer) -> None:
    shared = client_for(fake)
    await RemoteEmbedder(shared, MXBAI_INFO, owns_client=False).aclose()
    await shared.embeddings(MXBAI, ["still open"])
    owned = RemoteEmbedder(shared, MXBAI_INFO)
    assert owned.owns_client
    await owned.aclose()
    with pytest.raises(RuntimeError, match="closed"):
        await shared.embeddings(MXBAI, ["now closed"])


def test_split_near_middle_prefers_sentences_then_spaces() -> None:
    text = "First sentence here. Second one follows now. Third closes it."
    first, second = split_near_middle(text)
    assert first.endswith(".") and first + " " + second == text
    first, second = split_near_middle("alpha beta gamma delta")
    assert (first, second) == ("alpha beta", "gamma delta")
    assert split_near_middle("abcdef") == ("abc", "def")


# --- batching and limits ------------------------------------------------------------------


async def test_batches_stay_within_limits_and_rows_keep_order(fake: FakeServer) -> None:
    texts = corpus(120, seed=3)
    async with client_for(fake, concurrency=4) as client:
        embedder = RemoteEmbedder(client, GEMMA_INFO, max_batch_items=16, max_batch_tokens=8_192)
        vectors = await embedder.embed_batch(texts)
    counts = GEMMA_COUNTER.count_many(texts)
    ok = fake.log.ok()
    assert len(ok) == len(plan_batches(counts, 16, 8_192))
    for record in ok:
        assert len(record.inputs) <= 16
        assert sum(GEMMA_COUNTER.count_many(list(record.inputs))) <= 8_192
        assert max(record.tokens) <= GEMMA_INFO.context_length
        assert record.encoding_format == "base64" and "truncate_prompt_tokens" not in record.body_keys
    assert vectors.shape == (120, 3_584) and vectors.dtype == np.float32 and unit_rows(vectors)
    np.testing.assert_allclose(vectors, expected_rows(GEMMA, texts, 3_584), atol=1e-6)
    assert fake.log.embedded_counts() == Counter(text_hash(t) for t in texts)


async def test_a_planned_batch_is_exactly_one_request(fake: FakeServer) -> None:
    texts = [f"passage {i} about rivers" for i in range(20)]
    async with client_for(fake) as client:
        embedder = RemoteEmbedder(client, MXBAI_INFO)
        vectors = await embedder.embed_batch(texts)
        empty = await embedder.embed_batch([])
    assert len(fake.log.records) == 1 and vectors.shape == (20, 1_024)
    assert empty.shape == (0, 1_024)


async def test_over_limit_input_is_refused_before_sending(fake: FakeServer) -> None:
    too_long = "token " * 600  # WordPiece: 602 tokens with [CLS]/[SEP]
    async with client_for(fake) as client:
        embedder = RemoteEmbedder(client, MXBAI_INFO)
        with pytest.raises(EmbeddingError, match=r"input 1 has 602 tokens .* limit of 512") as caught:
            await embedder.embed_batch(["fine", too_long])
    assert "chunker" in caught.value.hint
    assert len(str(caught.value)) < 300  # names the input, does not dump it
    assert fake.log.records == []


async def test_inputs_at_the_client_limit_pass_thanks_to_the_margin(fake: FakeServer) -> None:
    # The client's gemma estimate (cl100k x 1.15) sits above the fake's count (x 1.1): no 400.
    texts = [text_near(GEMMA_COUNTER, 4_096, seed, f"full-{seed}") for seed in range(4)]
    assert all(4_000 < c <= 4_096 for c in GEMMA_COUNTER.count_many(texts))
    async with client_for(fake) as client:
        embedder = RemoteEmbedder(client, GEMMA_INFO)
        await embedder.embed_batch(texts)
    assert [r.status for r in fake.log.records] == [200]
    assert embedder.stats.split_inputs == 0


async def test_dimension_mismatch_is_an_error(fake: FakeServer) -> None:
    wrong = replace(GEMMA_INFO, dims=1_000)
    async with client_for(fake) as client:
        with pytest.raises(EmbeddingError, match="3584-dimensional"):
            await RemoteEmbedder(client, wrong).embed_batch(["x"])


async def test_api_errors_surface_as_themselves(fake: FakeServer) -> None:
    fake.reset(quota={MXBAI: 200})
    texts = [f"text number {i} " + "word " * 30 for i in range(40)]
    async with client_for(fake) as client:
        embedder = RemoteEmbedder(client, MXBAI_INFO, max_batch_items=4)
        with pytest.raises(QuotaExhaustedError):
            await embedder.embed_batch(texts)


# --- the 400 split path -------------------------------------------------------------------


async def test_server_counting_more_triggers_bisect_and_split(fake: FakeServer, caplog: pytest.LogCaptureFixture) -> None:
    fake.reset(embedding_token_ratio={GEMMA: 1.4})  # the fake now counts more than the client's margin
    long_texts = {3: text_near(GEMMA_COUNTER, 3_900, 31, "long-three"), 7: text_near(GEMMA_COUNTER, 3_900, 77, "long-seven")}
    texts = [long_texts.get(i, f"short text {i} about harbours and engines") for i in range(10)]
    assert all(count_embedding_tokens(GEMMA, t, 1.4) > 4_096 for t in long_texts.values())
    caplog.set_level(logging.WARNING, logger="indexer.remote")
    async with client_for(fake) as client:
        embedder = RemoteEmbedder(client, GEMMA_INFO)
        vectors = await embedder.embed_batch(texts)
    assert vectors.shape == (10, 3_584) and unit_rows(vectors)
    assert embedder.stats.split_inputs == 2 and embedder.stats.context_errors >= 4

    embedded = fake.log.embedded_counts()
    for i, text in enumerate(texts):
        if i in long_texts:
            assert embedded[text_hash(text)] == 0
            first, second = split_near_middle(text)
            assert embedded[text_hash(first)] == 1 and embedded[text_hash(second)] == 1
            halves = normalize(np.vstack([fake_vector(GEMMA, first, 3_584), fake_vector(GEMMA, second, 3_584)]))
            np.testing.assert_allclose(vectors[i], normalize(halves.mean(axis=0)), atol=1e-6)
        else:
            assert embedded[text_hash(text)] == 1  # bisection never embeds a fine input twice
            np.testing.assert_allclose(vectors[i], expected_rows(GEMMA, [text], 3_584)[0], atol=1e-6)

    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2
    for record in warnings:
        quoted = re.search(r"halves: '(.*)'$", record.getMessage())
        assert quoted is not None and len(quoted.group(1)) <= 60
    assert all(long_texts[3][:200] not in r.getMessage() for r in warnings)


async def test_halves_still_too_long_are_split_again(fake: FakeServer) -> None:
    fake.reset(embedding_token_ratio={GEMMA: 2.5})
    text = text_near(GEMMA_COUNTER, 3_900, 5, "very-long")
    async with client_for(fake) as client:
        embedder = RemoteEmbedder(client, GEMMA_INFO)
        vectors = await embedder.embed_batch([text, "tiny"])
    assert vectors.shape == (2, 3_584) and unit_rows(vectors)
    assert embedder.stats.split_inputs == 1
    assert all(max(r.tokens) <= 4_096 for r in fake.log.ok())
    assert len(fake.log.ok()) >= 3  # "tiny", then at least two levels of halves


# --- queries ------------------------------------------------------------------------------


@pytest.mark.parametrize("model", [GEMMA, MXBAI])
async def test_query_template_is_applied(fake: FakeServer, model: str) -> None:
    info = CATALOG.get(model)
    async with client_for(fake) as client:
        vector = await RemoteEmbedder(client, info).embed_query("where is Paris?")
    sent = fake.log.ok()[0].inputs
    assert sent == (info.format_query("where is Paris?"),) and sent[0] != "where is Paris?"
    assert vector.shape == (info.dims,) and np.isclose(np.linalg.norm(vector), 1.0)


async def test_query_over_the_limit_is_refused_before_sending(fake: FakeServer) -> None:
    async with client_for(fake) as client:
        with pytest.raises(EmbeddingError, match=r"question too long: \d+ tokens, .* takes 512"):
            await RemoteEmbedder(client, MXBAI_INFO).embed_query("why " * 600)
    assert fake.log.records == []


async def test_query_the_server_counts_too_long_is_an_embedding_error(fake: FakeServer) -> None:
    fake.reset(embedding_token_ratio={GEMMA: 1.4})
    question = text_near(GEMMA_COUNTER, 3_950, 9)
    async with client_for(fake) as client:
        with pytest.raises(EmbeddingError, match="question too long: .* as the API counts them"):
            await RemoteEmbedder(client, GEMMA_INFO).embed_query(question)


# --- acceptance: a rate-limit storm ---------------------------------------------------------


async def test_rate_limit_storm_embeds_every_chunk_exactly_once(fake: FakeServer) -> None:
    """30% of calls 429 without Retry-After, 5% 503, with latency: every chunk is embedded
    exactly once, none over the model's limit as the API counts it, and successful
    requests stay within 1.1x what the batch limits require."""
    fake.reset(latency=0.01, rate_429=0.3, retry_after_share=0.0, rate_503=0.05, seed=11)
    texts = corpus(500)
    async with client_for(fake, concurrency=4, max_retries=12) as client:
        embedder = RemoteEmbedder(client, GEMMA_INFO, max_batch_items=16, max_batch_tokens=8_192)
        vectors = await embedder.embed_batch(texts)

    records = fake.log.of("embeddings")
    ok = [r for r in records if r.ok]
    required = len(plan_batches(GEMMA_COUNTER.count_many(texts), 16, 8_192))
    assert fake.log.embedded_counts() == Counter(text_hash(t) for t in texts)  # exactly once
    assert all(max(r.tokens) <= 4_096 for r in ok) and not any(r.status == 400 for r in records)
    assert len(ok) <= 1.1 * required
    assert client.stats.rate_limited > 0 and client.stats.server_errors > 0  # the storm happened
    assert client.stats.retries == len(records) - len(ok)
    assert vectors.shape == (500, 3_584) and unit_rows(vectors)
    np.testing.assert_allclose(vectors, expected_rows(GEMMA, texts, 3_584), atol=1e-6)
