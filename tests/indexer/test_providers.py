"""Provider profiles, key redaction, rate-limit pacing and the circuit breaker, piece by piece.

The pieces run on their own here (a fake clock where time matters); the
client and the CLI are tested against the fake platforms in test_api.py and
tests/service/test_iio_platform.py.
"""

from __future__ import annotations

import pytest

from indexer.api import PROVIDERS, CircuitBreaker, ClientConfig, RateWindow, provider_for
from indexer.api.errors import Secret, redact
from indexer.catalog import default_catalog
from indexer.errors import ConfigError, ServiceUnavailableError
from indexer.tokens import counter_for

pytestmark = pytest.mark.anyio

KEY = "sk-canary-0123456789abcdef01234567"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds


# --- providers ---------------------------------------------------------------------


def test_the_provider_comes_from_the_name_else_the_host_else_io_intelligence() -> None:
    assert provider_for("https://api.iio.space/v1").name == "iio"
    assert provider_for("https://api.intelligence.io.solutions/api/v1").name == "ionet"
    assert provider_for("http://127.0.0.1:9/v1").name == "ionet"
    assert provider_for("http://127.0.0.1:9/v1", "IIO").name == "iio"
    with pytest.raises(ConfigError, match="unknown provider 'acme'"):
        provider_for("http://127.0.0.1:9/v1", "acme")


def test_profiles_hold_what_differs() -> None:
    ionet, iio = PROVIDERS["ionet"], PROVIDERS["iio"]
    assert (ionet.completion_tokens_param, iio.completion_tokens_param) == ("max_completion_tokens", "max_tokens")
    assert (ionet.health_path, iio.health_path) == (None, "/health")
    assert (ionet.tenant_header, iio.tenant_header) == (None, "X-IIO-Tenant")
    assert iio.error_codes["tier_exceeded"] == "quota" and iio.error_codes["invalid_model"] == "model"
    assert iio.unavailable_wait == 30.0


def test_a_tenant_needs_a_provider_with_a_tenant_header() -> None:
    assert ClientConfig(base_url="https://api.iio.space/v1", tenant="t-1").tenant == "t-1"
    with pytest.raises(ConfigError, match="no tenant header"):
        ClientConfig(tenant="t-1")  # io.net documents none


def test_the_config_never_shows_its_key() -> None:
    config = ClientConfig(api_key=KEY)
    assert KEY not in repr(config) and KEY not in str(config)


# --- catalog ---------------------------------------------------------------------


def test_iio_models_have_their_limits_dims_tokenizers_and_templates() -> None:
    catalog = default_catalog()
    nomic = catalog.get("nomic-embed-text", kind="embedding")
    assert (nomic.embedding_limit, nomic.dims, nomic.tokenizer) == (8_192, 768, "bert-uncased")
    assert nomic.format_query("why?") == "search_query: why?"
    assert nomic.format_document("text") == "search_document: text"
    qwen3 = catalog.get("qwen3-embedding:8b", kind="embedding")
    assert (qwen3.embedding_limit, qwen3.dims, qwen3.tokenizer) == (32_768, 4_096, "qwen")
    assert qwen3.format_query("why?").startswith("Instruct: ") and qwen3.format_query("why?").endswith("\nQuery:why?")
    assert qwen3.format_document("text") == "text"
    for chat in ("qwen2.5:7b", "qwen2.5:72b"):
        model = catalog.get(chat, kind="chat")
        assert (model.context_length, model.tokenizer, model.listed) == (32_768, "qwen", "iio")
    # Estimated tokenizers keep their family's safety factor; nomic counts exactly.
    assert counter_for(qwen3).name.startswith("cl100k*1.05") and counter_for(nomic).exact


def test_unknown_models_need_a_stated_limit() -> None:
    catalog = default_catalog()
    with pytest.raises(ConfigError, match="unknown model 'acme/new'") as caught:
        catalog.resolve("acme/new", "chat")
    assert "--context-length" in caught.value.hint
    with pytest.raises(ConfigError) as caught:
        catalog.resolve("acme/new-embed", "embedding")
    assert "--embedding-limit" in caught.value.hint
    stated = catalog.resolve("acme/new", "chat", 8_000)
    assert (stated.context_length, stated.source, stated.tokenizer) == (8_000, "stated", "other")
    # A stated limit lowers a known one, never raises it.
    assert catalog.resolve("qwen2.5:7b", "chat", 4_096).context_length == 4_096
    assert catalog.resolve("qwen2.5:7b", "chat", 100_000).context_length == 32_768


# --- redaction -------------------------------------------------------------------


def test_every_eight_character_piece_of_the_key_is_redacted_before_any_cut() -> None:
    secret = Secret(KEY)
    for text in (
        f"key {KEY} echoed",
        f"prefix only {KEY[:8]} and suffix {KEY[-9:]}",
        f"middle {KEY[5:19]}!",
        "<pre>Authorization: Bearer " + KEY[:-1] + "</pre>",
    ):
        out = redact(text, secret)
        assert not any(KEY[i : i + 8] in out for i in range(len(KEY) - 7)), out
        assert "***" in out
    # A cut made after redaction cannot leave part of the key: 19 of 20 characters were leaked that way.
    long = "x" * 290 + KEY
    assert not any(KEY[i : i + 8] in redact(long, secret)[:300] for i in range(len(KEY) - 7))
    assert redact("nothing secret here", secret) == "nothing secret here"


# --- pacing ----------------------------------------------------------------------


def headers(remaining: int, reset: float, limit: int = 10) -> dict[str, str]:
    return {"x-ratelimit-limit": str(limit), "x-ratelimit-remaining": str(remaining), "x-ratelimit-reset": f"{reset:.3f}"}


async def test_the_window_waits_for_the_reset_once_its_requests_are_spent() -> None:
    clock = Clock()
    waits: list[float] = []
    window = RateWindow(sleep=clock.sleep, clock=clock, on_wait=waits.append)
    await window.acquire()
    window.release(headers(remaining=2, reset=5.0, limit=3))
    for _ in range(2):
        await window.acquire()
        window.release(None)
    assert waits == []
    await window.acquire()  # the window is spent: wait for its end
    assert len(waits) == 1 and waits[0] == pytest.approx(5.0 + RateWindow.guard)
    assert clock.now >= 1005.0
    assert window.remaining == 2  # the new window: its limit of 3, minus this request
    window.release(None)


async def test_requests_in_flight_count_against_the_window() -> None:
    clock = Clock()
    window = RateWindow(sleep=clock.sleep, clock=clock)
    for _ in range(3):
        await window.acquire()
    window.release(headers(remaining=3, reset=10.0))  # two more are still in flight
    assert window.remaining == 1
    window.release(headers(remaining=9, reset=9.9))  # a late answer cannot raise the count
    assert window.remaining == 1


async def test_io_net_lower_case_request_headers_pace_too() -> None:
    clock = Clock()
    window = RateWindow(sleep=clock.sleep, clock=clock)
    await window.acquire()
    window.release({"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "2s"})
    waits: list[float] = []
    window._on_wait = waits.append
    await window.acquire()
    assert waits and waits[0] == pytest.approx(2.0 + RateWindow.guard)


async def test_a_window_further_off_than_max_wait_is_left_to_the_api() -> None:
    clock = Clock()
    window = RateWindow(sleep=clock.sleep, clock=clock, max_wait=60.0)
    await window.acquire()
    window.release(headers(remaining=0, reset=8 * 3600.0))  # a daily pool, not a burst limit
    await window.acquire()
    assert window.waits == 0 and clock.now == 1000.0


async def test_no_headers_no_pacing() -> None:
    clock = Clock()
    window = RateWindow(sleep=clock.sleep, clock=clock)
    for _ in range(100):
        await window.acquire()
        window.release({})
    assert window.waits == 0


# --- circuit breaker -----------------------------------------------------------------


def test_the_breaker_opens_after_failures_fails_fast_and_probes_after_the_cooldown() -> None:
    clock = Clock()
    breaker = CircuitBreaker(threshold=3, cooldown=30.0, clock=clock)
    for _ in range(2):
        breaker.check("api.example:443", "POST /chat")
        breaker.failure("connection refused")
    assert breaker.state == "closed"
    breaker.failure("connection refused")
    assert breaker.state == "open"
    with pytest.raises(ServiceUnavailableError, match=r"api\.example:443 is down"):
        breaker.check("api.example:443", "POST /chat")
    clock.now += 31
    assert breaker.state == "half-open"
    breaker.check("api.example:443", "POST /chat")  # the probe goes through...
    with pytest.raises(ServiceUnavailableError):
        breaker.check("api.example:443", "POST /chat")  # ...alone
    breaker.failure("connection refused")
    assert breaker.state == "open"  # a failed probe opens it again
    clock.now += 31
    breaker.check("api.example:443", "POST /chat")
    breaker.success()
    assert breaker.state == "closed" and breaker.failures == 0
