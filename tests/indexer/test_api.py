"""IOIntelligenceClient: error mapping, retries, concurrency, decoding, models, chat, secrecy.

Narrow cases run on httpx.MockTransport with a recording sleep (no real
waiting); integration cases run against tests/fakeapi.py served by uvicorn on
127.0.0.1. Nothing here leaves the machine.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import time
from typing import Any, Callable

import httpx
import numpy as np
import pytest

from indexer.api import (
    AdaptiveLimiter,
    ClientConfig,
    IOIntelligenceClient,
    parse_context_length_message,
    parse_delay,
)
from indexer.catalog import default_catalog
from indexer.errors import (
    ApiError,
    AuthenticationError,
    BadRequestError,
    ConfigError,
    ContextLengthError,
    InvalidResponseError,
    ModelNotFoundError,
    PaymentRequiredError,
    QuotaExhaustedError,
    RateLimitError,
    ServiceUnavailableError,
)
from tests.fakeapi import (
    GEMMA,
    MXBAI,
    NOMIC,
    QWEN_7B,
    QWEN_72B,
    FakeServer,
    count_embedding_tokens,
    fake_vector,
    iio_config,
)

pytestmark = pytest.mark.anyio

KEY = "test-key"
SECRET = "sk-live-7f3a9c0d1e2b4a6f"
LLAMA = "meta-llama/Llama-3.3-70B-Instruct"
R1 = "deepseek-ai/DeepSeek-R1-0528"
MOCK_URL = "http://127.0.0.1:9/api/v1"  # never contacted: MockTransport answers






def fast_config(base_url: str, **changes: Any) -> ClientConfig:
    settings: dict[str, Any] = {"base_url": base_url, "backoff_base": 0.001, "timeout": 5.0, "connect_timeout": 2.0}
    settings.update(changes)
    return ClientConfig(**settings)


def client_for(fake: FakeServer, key: str = KEY, **changes: Any) -> IOIntelligenceClient:
    return IOIntelligenceClient(key, fast_config(fake.base_url, **changes))


class Recorder:
    """A sleep that only records how long it was asked to wait."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def mock_client(
    handler: Callable[[httpx.Request], httpx.Response], key: str = KEY, **changes: Any
) -> tuple[IOIntelligenceClient, Recorder]:
    sleep = Recorder()
    http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    client = IOIntelligenceClient(key, fast_config(MOCK_URL, **changes), http=http, sleep=sleep)
    return client, sleep


def scripted(*responses: httpx.Response) -> tuple[Callable[[httpx.Request], httpx.Response], list[httpx.Request]]:
    """A handler answering `responses` in turn (the last one forever) and recording requests."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return responses[min(len(seen), len(responses)) - 1]

    return handler, seen


def embedding_ok(n: int = 1, dims: int = 4) -> httpx.Response:
    data = [{"object": "embedding", "index": i, "embedding": [float(i)] * dims} for i in range(n)]
    return httpx.Response(200, json={"object": "list", "data": data, "model": "m", "usage": {"prompt_tokens": 3}})


def vllm_error(status: int, message: str) -> httpx.Response:
    return httpx.Response(status, json={"object": "error", "message": message, "type": "BadRequestError", "code": status})


# --- secrecy and configuration ------------------------------------------------------------


async def test_repr_never_shows_the_key() -> None:
    client = IOIntelligenceClient(SECRET, ClientConfig(base_url=MOCK_URL))
    try:
        assert SECRET not in repr(client)
        assert SECRET not in repr(vars(client))
    finally:
        await client.aclose()


def test_missing_key_and_bad_config_are_refused() -> None:
    with pytest.raises(ConfigError):
        IOIntelligenceClient("  ")
    with pytest.raises(ConfigError):
        ClientConfig(concurrency=0)
    with pytest.raises(ConfigError):
        ClientConfig(base_url="api.example")


async def test_bad_key_maps_to_401_and_is_redacted_everywhere(fake: FakeServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with client_for(fake, key=SECRET) as client:
        with pytest.raises(AuthenticationError) as caught:
            await client.embeddings(GEMMA, ["hello"])
    error = caught.value
    assert error.status_code == 401 and "IOINTELLIGENCE_API_KEY" in error.hint
    # The fake echoed the key in its message; nothing of ours may repeat it.
    for text in (str(error), repr(error), error.user_message(), caplog.text, repr(client)):
        assert SECRET not in text
    assert "Incorrect API key" not in str(error)  # our words, never the upstream's
    assert len(fake.log.records) == 1  # 401 is never retried


async def test_server_message_echoing_a_bearer_token_is_not_relayed(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    handler, _ = scripted(vllm_error(400, f"bad header Authorization: Bearer {SECRET}"))
    client, _ = mock_client(handler, key="another-key")
    with pytest.raises(BadRequestError) as caught:
        await client.embeddings("m", ["x"])
    assert SECRET not in str(caught.value) and "Bearer" not in str(caught.value)
    assert SECRET not in caplog.text and "Bearer ***" in caplog.text  # the debug log keeps it, redacted


# --- statuses that are never retried ------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "error_type", "hint_word"),
    [
        (400, BadRequestError, "report"),
        (401, AuthenticationError, "IOINTELLIGENCE_API_KEY"),
        (402, PaymentRequiredError, "tier"),
        (404, ModelNotFoundError, "iorag models"),
        (422, BadRequestError, "report"),
    ],
)
async def test_terminal_statuses_are_mapped_and_not_retried(
    status: int, error_type: type[ApiError], hint_word: str
) -> None:
    handler, seen = scripted(vllm_error(status, f"refused with {status}"))
    client, sleep = mock_client(handler)
    with pytest.raises(error_type) as caught:
        await client.embeddings("some/model", ["x"])
    assert len(seen) == 1 and sleep.waits == []
    assert caught.value.status_code == status
    assert hint_word in caught.value.hint
    assert f"({status})" in str(caught.value)
    assert f"refused with {status}" not in str(caught.value)  # the upstream's words stay out


async def test_fastapi_validation_detail_is_logged_not_relayed(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    body = {"detail": [{"loc": ["body", "input"], "msg": "field required", "type": "missing"}]}
    handler, _ = scripted(httpx.Response(422, json=body))
    client, _ = mock_client(handler)
    with pytest.raises(BadRequestError, match=r"refused the request \(422\)") as caught:
        await client.embeddings("m", ["x"])
    assert "field required" not in str(caught.value) and "input: field required" in caplog.text


async def test_fake_402_404_422_reach_the_client_unretried(fake: FakeServer) -> None:
    async with client_for(fake) as client:
        with pytest.raises(PaymentRequiredError, match="Premium"):
            await client.chat("acme/Premium-405B", [{"role": "user", "content": "hi"}], max_completion_tokens=10)
        with pytest.raises(ModelNotFoundError, match="nope/nothing"):
            await client.embeddings("nope/nothing", ["x"])
        with pytest.raises(BadRequestError, match="422") as caught:
            await client.embeddings(GEMMA, ["x"], dimensions=0)
        assert caught.value.status_code == 422
    assert [r.status for r in fake.log.records] == [402, 404, 422]


# --- context length -----------------------------------------------------------------------

CONTEXT_MESSAGES = [
    (
        "This model's maximum context length is 4096 tokens. However, you requested 4310 tokens in the "
        "input for embedding generation. Please reduce the length of the input.",
        (4096, 4310),
    ),
    (
        "This model's maximum context length is 128,000 tokens. However, you requested 130,512 tokens "
        "(129,000 in the messages, 1,512 in the completion).",
        (128000, 130512),
    ),
    ("This model's maximum context length is 512 tokens. However, your request has 700 input tokens.", (512, 700)),
    ("The prompt (total length 9000) is too long to fit into the model (context length 8192).", (8192, 9000)),
]


@pytest.mark.parametrize(("message", "expected"), CONTEXT_MESSAGES)
def test_context_length_messages_parse(message: str, expected: tuple[int, int]) -> None:
    assert parse_context_length_message(message) == expected


def test_other_400_messages_are_not_context_errors() -> None:
    assert parse_context_length_message("Model does not support matryoshka representation") is None


@pytest.mark.parametrize("nested", [False, True])
async def test_context_length_400_becomes_context_length_error(nested: bool) -> None:
    message = CONTEXT_MESSAGES[0][0]
    body: dict[str, Any] = {"object": "error", "message": message, "type": "BadRequestError", "code": 400}
    if nested:
        body = {"error": {"message": message, "type": "invalid_request_error", "code": 400}}
    handler, seen = scripted(httpx.Response(400, json=body))
    client, _ = mock_client(handler)
    with pytest.raises(ContextLengthError) as caught:
        await client.embeddings(GEMMA, ["x"])
    assert (caught.value.limit, caught.value.requested) == (4096, 4310) and len(seen) == 1


@pytest.mark.parametrize("style", ["vllm", "openai"])
async def test_fake_context_length_answer_is_parsed(fake: FakeServer, style: str) -> None:
    fake.config.error_style = style  # type: ignore[assignment]
    text = "word " * 700
    async with client_for(fake) as client:
        with pytest.raises(ContextLengthError) as caught:
            await client.embeddings(MXBAI, ["short", text])
    assert caught.value.limit == 512
    assert caught.value.requested == count_embedding_tokens(MXBAI, text)


# --- retry waits --------------------------------------------------------------------------


def test_parse_delay_forms() -> None:
    now = 1_700_000_000.0
    assert parse_delay("3") == 3.0
    assert parse_delay("0.25") == 0.25
    assert parse_delay("1m30s") == 90.0
    assert parse_delay("250ms") == 0.25
    assert parse_delay(str(now + 42), now=now) == pytest.approx(42.0)
    assert parse_delay(email.utils.formatdate(now + 120, usegmt=True), now=now) == pytest.approx(120.0)
    assert parse_delay("soon") is None and parse_delay(None) is None and parse_delay("-1") is None


async def test_retry_after_seconds_is_honoured_exactly() -> None:
    handler, seen = scripted(httpx.Response(429, headers={"Retry-After": "7"}, json={"message": "slow"}), embedding_ok())
    client, sleep = mock_client(handler)
    result = await client.embeddings("m", ["x"])
    assert result.vectors.shape == (1, 4) and len(seen) == 2
    assert sleep.waits == [7.0]
    assert client.stats.rate_limited == 1 and client.stats.retries == 1 and client.stats.retry_wait == 7.0


async def test_retry_after_http_date_is_honoured() -> None:
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    handler, _ = scripted(httpx.Response(429, headers={"Retry-After": when}), embedding_ok())
    client, sleep = mock_client(handler)
    await client.embeddings("m", ["x"])
    assert len(sleep.waits) == 1 and 28.0 <= sleep.waits[0] <= 31.0


async def test_retry_after_beyond_max_retry_wait_gives_up_at_once() -> None:
    handler, seen = scripted(httpx.Response(429, headers={"Retry-After": "600"}, json={"message": "busy"}))
    client, sleep = mock_client(handler, max_retry_wait=60)
    with pytest.raises(RateLimitError, match="600 s"):
        await client.embeddings("m", ["x"])
    assert len(seen) == 1 and sleep.waits == []


async def test_backoff_is_exponential_with_full_jitter_then_gives_up() -> None:
    handler, seen = scripted(vllm_error(503, "overloaded"))
    client, sleep = mock_client(handler, max_retries=5, backoff_base=1.0, max_retry_wait=100)
    with pytest.raises(ServiceUnavailableError, match="after 6 attempts") as caught:
        await client.embeddings("m", ["x"])
    assert len(seen) == 6 and len(sleep.waits) == 5
    for attempt, wait in enumerate(sleep.waits):
        assert 0.0 <= wait <= 2.0**attempt
    assert caught.value.status_code == 503


async def test_total_retry_budget_ends_the_call() -> None:
    handler, seen = scripted(httpx.Response(429, json={"message": "slow down"}))
    client, sleep = mock_client(handler, max_retries=100, backoff_base=8.0, max_retry_wait=8.0, total_retry_budget=20.0)
    with pytest.raises(RateLimitError, match="retry budget"):
        await client.embeddings("m", ["x"])
    assert sum(sleep.waits) <= 20.0 and len(seen) == len(sleep.waits) + 1


async def test_fake_429_with_retry_after_waits_that_long(fake: FakeServer) -> None:
    fake.reset(script=["429+retry"], retry_after=0.4)
    async with client_for(fake) as client:
        started = time.monotonic()
        await client.embeddings(GEMMA, ["hello"])
        elapsed = time.monotonic() - started
    assert 0.38 <= elapsed < 2.0
    assert client.stats.retry_wait == pytest.approx(0.4)
    assert [r.status for r in fake.log.records] == [429, 200]


async def test_fake_429_without_retry_after_backs_off_and_succeeds(fake: FakeServer) -> None:
    fake.reset(script=[429, 429])
    async with client_for(fake, backoff_base=0.05) as client:
        result = await client.embeddings(GEMMA, ["hello"])
    assert result.vectors.shape == (1, 3584)
    assert client.stats.rate_limited == 2 and client.stats.retries == 2
    assert 0 <= client.stats.retry_wait <= 0.05 + 0.1
    assert [r.status for r in fake.log.records] == [429, 429, 200]


async def test_fake_503_is_retried(fake: FakeServer) -> None:
    fake.reset(script=[503, 503])
    async with client_for(fake) as client:
        await client.embeddings(GEMMA, ["hello"])
    assert client.stats.server_errors == 2 and [r.status for r in fake.log.records] == [503, 503, 200]


async def test_fake_always_503_ends_in_service_unavailable(fake: FakeServer) -> None:
    fake.reset(rate_503=1.0)
    async with client_for(fake, max_retries=3) as client:
        with pytest.raises(ServiceUnavailableError, match="after 4 attempts"):
            await client.embeddings(GEMMA, ["hello"])
    assert len(fake.log.records) == 4


async def test_fake_timeouts_are_retried(fake: FakeServer) -> None:
    fake.reset(script=["timeout", "timeout"], stall=5.0)
    async with client_for(fake, timeout=0.3) as client:
        started = time.monotonic()
        result = await client.embeddings(GEMMA, ["hello"])
        elapsed = time.monotonic() - started
    assert result.vectors.shape == (1, 3584)
    assert client.stats.transport_errors == 2 and elapsed < 3.0


async def test_fake_timeouts_every_time_end_in_service_unavailable(fake: FakeServer) -> None:
    fake.reset(rate_timeout=1.0, stall=5.0)
    async with client_for(fake, timeout=0.2, max_retries=1) as client:
        with pytest.raises(ServiceUnavailableError, match="timed out") as caught:
            await client.embeddings(GEMMA, ["hello"])
    assert isinstance(caught.value.__cause__, httpx.TimeoutException)
    assert client.stats.requests == 2


async def test_fake_dropped_connections_are_retried(fake: FakeServer) -> None:
    fake.reset(script=["drop", "drop"])
    async with client_for(fake) as client:
        await client.embeddings(GEMMA, ["hello"])
    assert client.stats.transport_errors == 2
    assert [r.status for r in fake.log.records] == ["drop", "drop", 200]


async def test_fake_dropped_connections_every_time_end_in_service_unavailable(fake: FakeServer) -> None:
    fake.reset(rate_drop=1.0)
    async with client_for(fake, max_retries=2) as client:
        with pytest.raises(ServiceUnavailableError, match="connection to .* failed") as caught:
            await client.embeddings(GEMMA, ["hello"])
    assert isinstance(caught.value.__cause__, httpx.TransportError)
    assert len(fake.log.records) == 3


# --- quotas -------------------------------------------------------------------------------


async def test_fake_quota_exhaustion_fails_promptly(fake: FakeServer) -> None:
    fake.reset(quota={GEMMA: 40})
    async with client_for(fake, backoff_base=1.0) as client:
        await client.embeddings(GEMMA, ["a few words"])
        started = time.monotonic()
        with pytest.raises(QuotaExhaustedError, match=r"refreshes in 8\.0 h") as caught:
            await client.embeddings(GEMMA, ["many more words " * 20])
        assert time.monotonic() - started < 0.5
    assert "refreshes" in caught.value.hint
    assert [r.fault for r in fake.log.records] == ["", "quota"]  # one attempt, no retry


async def test_quota_wait_rides_out_a_near_refresh(fake: FakeServer) -> None:
    text = "a few words " * 10
    assert 20 < count_embedding_tokens(GEMMA, text, 1.1) <= 40
    fake.reset(quota={GEMMA: 40}, quota_reset=0.3)
    async with client_for(fake, quota_wait=5.0) as client:
        await client.embeddings(GEMMA, [text])
        await client.embeddings(GEMMA, [text])
    faults = [r.fault for r in fake.log.records]
    assert faults[0] == faults[-1] == "" and set(faults[1:-1]) == {"quota"}
    assert 0.25 <= client.stats.retry_wait <= 0.5


async def test_quota_refresh_beyond_quota_wait_fails_at_once() -> None:
    quota = httpx.Response(429, headers={"x-ratelimit-reset": "3600"}, json={"error": {"message": "credits exhausted"}})
    handler, seen = scripted(quota)
    client, sleep = mock_client(handler, quota_wait=600)
    with pytest.raises(QuotaExhaustedError, match="60 min"):
        await client.embeddings("m", ["x"])
    assert len(seen) == 1 and sleep.waits == []


async def test_a_reset_beyond_the_retry_budget_counts_as_quota() -> None:
    far = httpx.Response(429, headers={"x-ratelimit-reset": "7200"}, json={"message": "Too many requests"})
    handler, seen = scripted(far)
    client, sleep = mock_client(handler, total_retry_budget=300)
    with pytest.raises(QuotaExhaustedError, match="2.0 h"):
        await client.embeddings("m", ["x"])
    assert len(seen) == 1 and sleep.waits == []


# --- adaptive concurrency -----------------------------------------------------------------


async def test_limiter_halves_once_per_episode_and_grows_back() -> None:
    limiter = AdaptiveLimiter(4)
    epochs = [await limiter.acquire() for _ in range(4)]
    limiter.record(epochs[0], "throttled")
    limiter.record(epochs[1], "throttled")  # same episode: no second halving
    assert limiter.limit == 2
    for _ in range(4):
        limiter.release()
    later = await limiter.acquire()
    limiter.record(later, "throttled")
    limiter.release()
    assert limiter.limit == 1
    limiter.record(await limiter.acquire(), "failed")  # 5xx and timeouts leave the limit alone
    limiter.release()
    assert limiter.limit == 1
    grown = []
    for _ in range(12):
        limiter.record(await limiter.acquire(), "ok")
        limiter.release()
        grown.append(limiter.limit)
    assert grown[:6] == [2, 2, 3, 3, 3, 4] and max(grown) == 4


async def test_limiter_caps_requests_in_flight() -> None:
    limiter = AdaptiveLimiter(3)
    peak = 0

    async def job() -> None:
        nonlocal peak
        epoch = await limiter.acquire()
        peak = max(peak, limiter.in_flight)
        await asyncio.sleep(0.001)
        limiter.record(epoch, "ok")
        limiter.release()

    await asyncio.gather(*(job() for _ in range(30)))
    assert peak == 3 and limiter.in_flight == 0


async def test_client_concurrency_halves_on_429_and_grows_back(fake: FakeServer) -> None:
    fake.reset(script=[429])
    async with client_for(fake, concurrency=4) as client:
        await client.embeddings(GEMMA, ["one"])
        assert client.stats.concurrency == 2 and client.stats.min_concurrency == 2
        seen = []
        for _ in range(6):
            await client.embeddings(GEMMA, ["again"])
            seen.append(client.stats.concurrency)
    # The retry that succeeded counts as the first success at limit 2.
    assert seen == [3, 3, 3, 4, 4, 4]


# --- embeddings decoding ------------------------------------------------------------------


async def test_base64_decoding_and_order_under_concurrency(fake: FakeServer) -> None:
    fake.reset(shuffle_data=True, latency=0.005, script=[429, 503, "drop"])
    batches = [[f"batch {b} text {i} " + "x" * (b * 7 + i) for i in range(5)] for b in range(16)]
    async with client_for(fake, concurrency=4) as client:
        results = await asyncio.gather(*(client.embeddings(GEMMA, texts) for texts in batches))
    for texts, result in zip(batches, results):
        expected = np.vstack([fake_vector(GEMMA, t, 3584) for t in texts])
        assert result.vectors.dtype == np.float32
        np.testing.assert_array_equal(result.vectors, expected)
    ok = fake.log.ok()
    assert len(ok) == 16 and all(r.encoding_format == "base64" for r in ok)
    assert all("truncate_prompt_tokens" not in r.body_keys for r in fake.log.records)
    assert client.stats.prompt_tokens == sum(sum(r.tokens) for r in ok)


async def test_float_lists_are_accepted_too(fake: FakeServer) -> None:
    fake.reset(force_float=True)
    async with client_for(fake) as client:
        result = await client.embeddings(MXBAI, ["alpha", "beta"])
    np.testing.assert_allclose(result.vectors[1], fake_vector(MXBAI, "beta", 1024), rtol=1e-6)


@pytest.mark.parametrize(
    "payload",
    [
        {"data": []},
        {"data": [{"index": 0, "embedding": "not base64!"}]},
        {"data": [{"index": 3, "embedding": [1.0]}]},
        {"data": [{"index": 0, "embedding": [1.0]}, {"index": 0, "embedding": [1.0]}]},
    ],
)
async def test_malformed_embedding_responses_are_errors(payload: dict[str, Any]) -> None:
    n = max(1, len(payload["data"]))
    handler, _ = scripted(httpx.Response(200, json=payload))
    client, _ = mock_client(handler)
    with pytest.raises(ApiError):
        await client.embeddings("m", ["x"] * n)


# --- models -------------------------------------------------------------------------------


def by_id(models: list[Any]) -> dict[str, Any]:
    return {m.id: m for m in models}


async def test_models_openai_shape_and_merge_with_catalog(fake: FakeServer) -> None:
    async with client_for(fake) as client:
        models = by_id(await client.list_models())
    assert models[LLAMA].context_length == 128_000 and models[LLAMA].source == "api"
    assert models["Qwen3-235B-A22B-Thinking-2507"].context_length is None  # max_model_len null
    assert models[GEMMA].kind == "embedding" and models[MXBAI].kind == "embedding"
    assert models["acme/Small-Chat-8K"].kind == "chat" and models["acme/Small-Chat-8K"].listed == "api"
    merged = default_catalog().merged(models.values())
    assert merged.get(LLAMA).source == "api"
    thinking = merged.get("Qwen3-235B-A22B-Thinking-2507")
    assert thinking.context_length == 262_144 and thinking.source == "catalog"  # unknown stays the catalog's
    assert merged.get("acme/Small-Chat-8K").context_length == 8_192
    assert merged.get(MXBAI).dims == 1_024 and merged.get(MXBAI).tokenizer == "bert-uncased"


@pytest.mark.parametrize("pagination", ["next", "cursor", "page"])
async def test_models_paged_shape_all_pages(fake: FakeServer, pagination: str) -> None:
    fake.reset(models_shape="paged", models_page_size=3, models_pagination=pagination)
    async with client_for(fake) as client:
        models = by_id(await client.list_models())
    assert len(models) == len(fake.config.models)
    assert len(fake.log.of("models")) == 3
    assert models[GEMMA].context_length == 4_096 and models[GEMMA].dims == 3_584  # top level
    assert models[MXBAI].context_length == 512 and models[MXBAI].dims == 1_024  # under metadata
    assert models[R1].max_output_tokens == 32_768  # metadata.max_tokens
    assert models[LLAMA].max_output_tokens == 8_192  # top-level max_tokens
    assert models["openai/gpt-oss-120b"].context_length is None
    vectorizer = models["acme/vectorizer-v2"]
    assert vectorizer.kind == "embedding" and vectorizer.dims == 768 and vectorizer.embedding_limit == 8_192
    merged = default_catalog().merged(models.values())
    assert merged.get(R1).max_output_tokens == 32_768 and merged.get(R1).source == "api"


async def test_models_pagination_never_follows_another_host() -> None:
    first = httpx.Response(200, json={"data": [{"id": "a"}], "next": "https://elsewhere.example/models?page=2"})
    handler, seen = scripted(first)
    client, _ = mock_client(handler)
    with pytest.raises(ApiError, match="another host"):
        await client.list_models()
    assert len(seen) == 1


# --- chat ---------------------------------------------------------------------------------

#: Sources as iorag numbers them, one block each with its `[n]` marker opening a line; the fake cites those.
PROMPT = [
    {"role": "system", "content": "Answer from the sources and cite them, like [1] or [2][3]."},
    {"role": "user", "content": "Sources:\n\n[1] Geography\nParis is in France.\n\n[2]\nIt is the capital.\n\nQuestion: where is Paris?"},
]


async def test_chat_plain(fake: FakeServer) -> None:
    async with client_for(fake) as client:
        result = await client.chat(LLAMA, PROMPT, max_completion_tokens=64, temperature=0.1)
    assert result.content == "Answer based on [1] and [2]."
    assert result.reasoning_content is None and result.finish_reason == "stop"
    assert result.usage.prompt_tokens == fake.log.ok("chat")[0].tokens[0]
    assert fake.log.ok("chat")[0].body_keys == ("max_completion_tokens", "messages", "model", "temperature")


async def test_chat_reasoning_is_kept_apart(fake: FakeServer) -> None:
    async with client_for(fake) as client:
        result = await client.chat(R1, PROMPT, max_completion_tokens=64)
    assert result.content == "Answer based on [1] and [2]."
    assert result.reasoning_content and "sources" in result.reasoning_content
    assert result.reasoning_content not in result.content


async def test_chat_stream_keeps_reasoning_apart_and_ends_with_usage(fake: FakeServer) -> None:
    fake.reset(script=[429])  # refused before the first byte: retried
    async with client_for(fake) as client:
        deltas = [d async for d in client.chat_stream(R1, PROMPT, max_completion_tokens=64)]
        plain = await client.chat(R1, PROMPT, max_completion_tokens=64)
    assert all(not (d.content and d.reasoning) for d in deltas)
    content = "".join(d.content for d in deltas)
    reasoning = "".join(d.reasoning for d in deltas)
    assert content == plain.content and reasoning == plain.reasoning_content
    assert [d.finish_reason for d in deltas if d.finish_reason] == ["stop"]
    assert deltas[-1].usage == plain.usage and deltas[-1].content == deltas[-1].reasoning == ""
    assert client.stats.completion_tokens == 2 * plain.usage.completion_tokens
    assert client._limiter.in_flight == 0


async def test_chat_stream_errors_are_mapped(fake: FakeServer) -> None:
    async with client_for(fake) as client:
        with pytest.raises(PaymentRequiredError):
            async for _ in client.chat_stream("acme/Premium-405B", PROMPT, max_completion_tokens=8):
                pass
        assert client._limiter.in_flight == 0


async def test_chat_over_context_is_a_context_length_error(fake: FakeServer) -> None:
    long_prompt = [{"role": "user", "content": "lorem ipsum dolor " * 4_000}]
    async with client_for(fake) as client:
        with pytest.raises(ContextLengthError) as caught:
            await client.chat("acme/Small-Chat-8K", long_prompt, max_completion_tokens=512)
    assert caught.value.limit == 8_192 and caught.value.requested > 8_192
    assert len(fake.log.records) == 1


async def test_chat_deprecated_max_tokens_is_passed_through(fake: FakeServer) -> None:
    async with client_for(fake) as client:
        result = await client.chat(LLAMA, PROMPT, max_completion_tokens=3, max_tokens=3)
    assert result.finish_reason == "length"
    assert "max_tokens" in fake.log.ok("chat")[0].body_keys


async def test_sse_parsing_tolerates_comments_and_missing_done() -> None:
    events = (
        ": keep-alive\n\n"
        'data: {"choices":[{"index":0,"delta":{"reasoning":"think "}}]}\n\n'
        'data: {"choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":"stop"}]}\n\n'
        'data: {"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":2}}\n\n'
    )
    handler, seen = scripted(httpx.Response(200, content=events.encode(), headers={"content-type": "text/event-stream"}))
    client, _ = mock_client(handler)
    deltas = [d async for d in client.chat_stream("m", PROMPT, max_completion_tokens=8)]
    assert [(d.content, d.reasoning) for d in deltas if d.content or d.reasoning] == [("", "think "), ("Hi", "")]
    assert deltas[-1].usage is not None and deltas[-1].usage.prompt_tokens == 5
    sent = json.loads(seen[0].content)
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}


def test_the_api_package_exports_its_names_and_alone_imports_httpx() -> None:
    import re
    from pathlib import Path

    import indexer.api as api

    assert api.__all__ == sorted(api.__all__)
    assert all(hasattr(api, name) for name in api.__all__)
    root = Path(api.__file__).parents[1]
    for path in [*root.rglob("*.py"), *(root.parent / "service").rglob("*.py")]:
        if re.search(r"^\s*(?:import|from) httpx\b", path.read_text(encoding="utf-8"), re.M):
            assert path.parent == root / "api", f"{path} imports httpx"


# --- the IIO AI Platform profile, and failures that never leak or repeat -------------------


IIO_KEY = "iio-dev-test-key"


def iio_client(fake: FakeServer, sleep: Any = None, **changes: Any) -> IOIntelligenceClient:
    config = fast_config(fake.base_url, provider="iio", **changes)
    return IOIntelligenceClient(IIO_KEY, config, sleep=sleep)


@pytest.fixture
def iio(server: FakeServer) -> FakeServer:
    server.reset(iio_config(rate_limit=None))
    return server


async def test_iio_chat_sends_max_tokens_and_the_tenant_header(iio: FakeServer) -> None:
    async with iio_client(iio, tenant="team-7") as client:
        result = await client.chat(QWEN_7B, [{"role": "user", "content": "hi"}], max_completion_tokens=64)
        await client.embeddings(NOMIC, ["search_document: hello"])
    assert result.finish_reason == "stop"
    chat = iio.log.of("chat")[0]
    assert "max_tokens" in chat.body_keys and "max_completion_tokens" not in chat.body_keys
    assert iio.api.tenants == ["team-7", "team-7"]


async def test_iio_invalid_model_names_the_model_and_iorag_models(iio: FakeServer) -> None:
    async with iio_client(iio) as client:
        with pytest.raises(ModelNotFoundError) as caught:
            await client.chat(QWEN_72B, [{"role": "user", "content": "hi"}], max_completion_tokens=8)
    assert "qwen2.5:72b" in str(caught.value) and "invalid_model" in str(caught.value)
    assert "iorag models" in caught.value.user_message()
    assert len(iio.log.of("chat")) == 1  # never retried


async def test_iio_tier_exceeded_is_a_quota_pause_with_its_reset_time(iio: FakeServer) -> None:
    iio.reset(iio_config(rate_limit=None, monthly_limit=1, month_reset=7_200))
    async with iio_client(iio) as client:
        await client.embeddings(NOMIC, ["one"])
        with pytest.raises(QuotaExhaustedError) as caught:
            await client.embeddings(NOMIC, ["two"])
    message = caught.value.user_message()
    assert "monthly request limit" in message and "resets in 2.0 h" in message and "rerun" in message
    assert caught.value.retry_after == pytest.approx(7_200, abs=2)


async def test_iio_cell_unavailable_waits_30_s_and_consults_health(iio: FakeServer) -> None:
    iio.reset(iio_config(rate_limit=None, script=[503]))
    sleep = Recorder()
    async with iio_client(iio, sleep=sleep) as client:
        await client.embeddings(NOMIC, ["x"])
    assert sleep.waits == [30.0]
    assert [r.endpoint for r in iio.log.records] == ["embeddings", "health", "embeddings"]
    assert [r.status for r in iio.log.of("embeddings")] == [503, 200]


async def test_iio_cell_unavailable_past_the_budget_says_what_health_said(iio: FakeServer) -> None:
    iio.reset(iio_config(rate_limit=None, script=[503, 503]))
    sleep = Recorder()
    async with iio_client(iio, sleep=sleep, total_retry_budget=40.0) as client:
        with pytest.raises(ServiceUnavailableError) as caught:
            await client.embeddings(NOMIC, ["x"])
    assert "cell_unavailable" in str(caught.value) and "health status degraded" in str(caught.value)
    assert sleep.waits == [30.0]  # a second 30 s wait would overrun the 40 s budget


async def test_pacing_keeps_a_10_per_window_limit_without_a_429(iio: FakeServer) -> None:
    iio.reset(iio_config(rate_limit=10, rate_window=0.5))
    waits: list[float] = []
    config = fast_config(iio.base_url, provider="iio")
    async with IOIntelligenceClient(IIO_KEY, config, on_wait=waits.append) as client:
        await asyncio.gather(*(client.embeddings(NOMIC, [f"text {i}"]) for i in range(35)))
    statuses = [r.status for r in iio.log.of("embeddings")]
    assert statuses.count(200) == 35 and 429 not in statuses
    assert len(waits) >= 3  # 35 requests at 10 a window: it waited for three windows at least


async def test_io_net_lower_case_rate_headers_pace_too(fake: FakeServer) -> None:
    fake.reset(rate_limit=5, rate_window=0.5)
    async with client_for(fake) as client:
        await asyncio.gather(*(client.embeddings(GEMMA, [f"text {i}"]) for i in range(12)))
        assert client.window.waits >= 2
    assert 429 not in [r.status for r in fake.log.records]


async def test_an_invalid_json_200_is_an_invalid_response(fake: FakeServer) -> None:
    fake.reset(script=["badjson"])
    async with client_for(fake) as client:
        with pytest.raises(InvalidResponseError, match="not valid JSON"):
            await client.embeddings(GEMMA, ["x"])
    assert InvalidResponseError.status_code == 502


async def test_a_stream_that_stops_unfinished_is_an_error_not_an_answer(fake: FakeServer) -> None:
    fake.reset(script=["cutstream"])
    pieces: list[str] = []
    async with client_for(fake) as client:
        with pytest.raises(InvalidResponseError, match="ended before the answer was finished"):
            async for delta in client.chat_stream(LLAMA, [{"role": "user", "content": "hi"}], max_completion_tokens=8):
                pieces.append(delta.content)
    assert pieces == ["Half an ans"]


async def test_a_chat_cut_after_sending_is_not_sent_again(fake: FakeServer) -> None:
    fake.reset(script=["drop", "drop"])
    async with client_for(fake) as client:
        with pytest.raises(ServiceUnavailableError, match="not sent again") as caught:
            await client.chat(LLAMA, [{"role": "user", "content": "hi"}], max_completion_tokens=8)
    assert "127.0.0.1" in str(caught.value)
    assert len(fake.log.of("chat")) == 1  # received (and maybe billed) once, never twice


def _closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_a_refused_connection_fails_at_once_naming_the_host() -> None:
    url = f"http://127.0.0.1:{_closed_port()}/api/v1"
    sleep = Recorder()
    client = IOIntelligenceClient(KEY, fast_config(url, breaker_threshold=2), sleep=sleep)
    started = time.monotonic()
    async with client:
        for _ in range(2):
            with pytest.raises(ServiceUnavailableError, match=r"cannot reach 127\.0\.0\.1:\d+: connection refused"):
                await client.embeddings(GEMMA, ["x"])
        assert client.stats.requests == 2 and sleep.waits == []  # no retries
        assert client.breaker.state == "open"
        with pytest.raises(ServiceUnavailableError, match=r"127\.0\.0\.1:\d+ is down"):
            await client.embeddings(GEMMA, ["x"])
        assert client.stats.requests == 2  # the open circuit sent nothing
    assert time.monotonic() - started < 2.0


async def test_an_unknown_host_fails_at_once() -> None:
    client = IOIntelligenceClient(KEY, fast_config("http://no-such-host.invalid/api/v1"), sleep=Recorder())
    async with client:
        with pytest.raises(ServiceUnavailableError, match=r"cannot reach no-such-host\.invalid: unknown host"):
            await client.embeddings(GEMMA, ["x"])
        assert client.stats.requests == 1
