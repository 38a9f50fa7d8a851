"""HTTP client for the IO Intelligence API: embeddings, chat (plain and streamed), models.

Transport is kept apart from policy. `_send()` makes exactly one HTTP call and
translates what came back (a status and body, or an httpx error) into the
`ApiError` tree; the retry policy (tenacity) and an adaptive concurrency limit
wrap it. This is the only module that imports httpx.

Retries: 429, 408, 5xx, timeouts and dropped or refused connections are
retried with exponential backoff and full jitter, or after exactly the delay a
`Retry-After` header asks for (seconds or an HTTP date). 400/401/402/404/422
are never retried. A 429 whose message speaks of a quota or credits is an
exhausted quota, and so is one without Retry-After whose `x-ratelimit-reset*`
lies beyond the whole retry budget: it raises `QuotaExhaustedError` at once
unless `ClientConfig.quota_wait` covers the time to the refresh.

The API key never appears in a repr, an exception message or a log line; a
server message that echoes a bearer token is redacted.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import email.utils
import json
import logging
import math
import random
import re
import time
from dataclasses import asdict, dataclass
from typing import Any, AsyncIterator, Awaitable, Callable, Literal, Mapping, Sequence
from urllib.parse import urljoin, urlsplit

import httpx
import numpy as np
import tenacity

from .catalog import ModelInfo, default_catalog, guess_tokenizer
from .errors import (
    ApiError,
    AuthenticationError,
    BadRequestError,
    ConfigError,
    ContextLengthError,
    ModelNotFoundError,
    PaymentRequiredError,
    QuotaExhaustedError,
    RateLimitError,
    ServiceUnavailableError,
)

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.intelligence.io.solutions/api/v1"

Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True)
class ClientConfig:
    """How the client talks to the API; every wait is in seconds."""

    base_url: str = DEFAULT_BASE_URL
    #: Read/write/pool timeout of one HTTP call.
    timeout: float = 60.0
    connect_timeout: float = 10.0
    #: Retries after the first attempt (429, 5xx, timeouts, dropped connections).
    max_retries: int = 6
    #: Longest single wait. A Retry-After asking for more ends the call at once.
    max_retry_wait: float = 60.0
    #: Time one call may spend, attempts and waits together, before giving up.
    total_retry_budget: float = 300.0
    #: Most requests in flight; the adaptive limit starts here and never exceeds it.
    concurrency: int = 4
    #: How long to keep waiting on an exhausted quota (0: give up at once).
    quota_wait: float = 0.0
    #: Ceiling of the first backoff when no Retry-After is given; it doubles per
    #: retry and the wait is drawn uniformly below it (full jitter). Tests use ~0.
    backoff_base: float = 0.5
    #: Most pages of /models followed (guards against a server that loops).
    max_model_pages: int = 50

    def __post_init__(self) -> None:
        if not self.base_url.startswith(("http://", "https://")):
            raise ConfigError(f"base URL must start with http:// or https://: {self.base_url!r}")
        if self.concurrency < 1:
            raise ConfigError(f"concurrency must be at least 1, not {self.concurrency}")
        if self.max_retries < 0:
            raise ConfigError(f"max_retries must be 0 or more, not {self.max_retries}")
        if min(self.timeout, self.connect_timeout) <= 0:
            raise ConfigError("timeouts must be positive")
        if min(self.max_retry_wait, self.total_retry_budget, self.quota_wait, self.backoff_base) < 0:
            raise ConfigError("waits and budgets cannot be negative")


# --- results -----------------------------------------------------------------


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass(frozen=True)
class EmbeddingResult:
    """Vectors in input order as the API returned them (not normalized here)."""

    vectors: np.ndarray
    prompt_tokens: int
    model: str


@dataclass(frozen=True)
class ChatResult:
    content: str
    #: What a reasoning model thought before answering; never mixed into `content`.
    reasoning_content: str | None
    finish_reason: str | None
    usage: Usage
    model: str


@dataclass(frozen=True)
class ChatDelta:
    """One piece of a streamed answer.

    A delta carries answer text in `content` or reasoning text in `reasoning`
    (never both, so reasoning never leaks into the answer). The last deltas
    carry `finish_reason` and then `usage`, with both texts empty.
    """

    content: str = ""
    reasoning: str = ""
    finish_reason: str | None = None
    usage: Usage | None = None


@dataclass
class ClientStats:
    """Counters for benchmarks and reports (one client, all calls)."""

    requests: int = 0  # HTTP calls sent, retries included
    succeeded: int = 0  # 2xx answers
    retries: int = 0  # attempts after a retryable failure
    rate_limited: int = 0  # 429 answers (quota ones included)
    server_errors: int = 0  # 5xx and 408 answers
    transport_errors: int = 0  # timeouts, dropped or refused connections
    prompt_tokens: int = 0
    completion_tokens: int = 0
    retry_wait: float = 0.0  # seconds spent waiting before retries
    concurrency: int = 0  # current in-flight limit
    min_concurrency: int = 0  # lowest the limit went

    def snapshot(self) -> dict[str, Any]:
        return asdict(self)


# --- secrets and messages ----------------------------------------------------


class _Secret:
    """Holds the key; its repr never shows it (tracebacks with locals, debuggers)."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "_Secret('***')"


_BEARER = re.compile(r"(?i)(bearer\s+)[^\s\"',;]+")


def _redact(text: str, secret: _Secret) -> str:
    """The text with the key and any bearer token replaced by ***."""
    key = secret.reveal()
    if key:
        text = text.replace(key, "***")
    return _BEARER.sub(r"\1***", text)


def _message_from_body(body: Any) -> str:
    """The human message in an error body: vLLM's top level, OpenAI's `error`, FastAPI's `detail`."""
    if not isinstance(body, dict):
        return ""
    error = body.get("error")
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return error["message"]
    if isinstance(error, str):
        return error
    if isinstance(body.get("message"), str):
        return body["message"]
    detail = body.get("detail")
    if isinstance(detail, str):
        return detail
    if isinstance(detail, list):
        parts = []
        for item in detail:
            if isinstance(item, dict):
                where = ".".join(str(p) for p in item.get("loc", ()) if p != "body")
                parts.append(f"{where}: {item.get('msg', '')}" if where else str(item.get("msg", "")))
        return "; ".join(parts)
    return ""


_LIMIT = re.compile(r"(?:maximum context length|context length|max_model_len)\D{0,20}?(\d[\d,]*)", re.I)
_REQUESTED = re.compile(
    r"(?:you requested|requested|request has|total length|input length|prompt has|prompt contains)\D{0,20}?(\d[\d,]*)",
    re.I,
)


def parse_context_length_message(message: str) -> tuple[int, int] | None:
    """(limit, requested) from a vLLM context-length message, or None if it is another 400."""
    limit = _LIMIT.search(message)
    requested = _REQUESTED.search(message)
    if not limit or not requested:
        return None
    return int(limit.group(1).replace(",", "")), int(requested.group(1).replace(",", ""))


_DURATION = re.compile(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m(?!s))?(?:(\d+(?:\.\d+)?)s)?(?:(\d+(?:\.\d+)?)ms)?")


def parse_delay(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After or x-ratelimit-reset value, or None if unreadable.

    Accepts seconds ("2", "0.5"), an epoch timestamp (> 1e9), a duration
    ("1m30s", "250ms") or an HTTP date.
    """
    if value is None or not value.strip():
        return None
    value = value.strip()
    now = time.time() if now is None else now
    try:
        number = float(value)
    except ValueError:
        pass
    else:
        if not math.isfinite(number) or number < 0:
            return None
        return max(0.0, number - now) if number > 1e9 else number
    match = _DURATION.fullmatch(value)
    if match and any(match.groups()):
        h, m, s, ms = (float(g) if g else 0.0 for g in match.groups())
        return h * 3600 + m * 60 + s + ms / 1000
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now)


_QUOTA_WORDS = re.compile(r"quota|credits?\b|daily (?:token )?limit", re.I)
_RESET_HEADERS = ("x-ratelimit-reset", "x-ratelimit-reset-tokens", "x-ratelimit-reset-requests")


# --- adaptive concurrency ----------------------------------------------------

Outcome = Literal["ok", "throttled", "failed"]


class AdaptiveLimiter:
    """Caps requests in flight with AIMD: halve on a 429, add one after a run of successes.

    One 429 episode halves the limit once: 429s of requests that started
    before the last decrease are ignored (they saw the old, higher load).
    The limit grows by one after `limit` successes in a row, up to the maximum.
    Other failures (5xx, timeouts) leave the limit alone.
    """

    def __init__(self, limit: int, on_change: Callable[[int], None] | None = None) -> None:
        self.max_limit = limit
        self.limit = limit
        self.in_flight = 0
        self._epoch = 0
        self._streak = 0
        self._waiters: list[asyncio.Future[None]] = []
        self._on_change = on_change

    async def acquire(self) -> int:
        """Wait for a free slot; returns the epoch the request starts in."""
        while self.in_flight >= self.limit:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            finally:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
        self.in_flight += 1
        return self._epoch

    def record(self, epoch: int, outcome: Outcome) -> None:
        """Adjust the limit after a request started in `epoch` ended with `outcome`."""
        if outcome == "throttled":
            self._streak = 0
            if epoch == self._epoch:
                self._epoch += 1
                self._set(max(1, self.limit // 2))
        elif outcome == "ok":
            self._streak += 1
            if self._streak >= self.limit and self.limit < self.max_limit:
                self._streak = 0
                self._set(self.limit + 1)

    def release(self) -> None:
        """Free a slot (synchronous, so it is safe in `finally` under cancellation)."""
        self.in_flight -= 1
        self._wake()

    def _set(self, limit: int) -> None:
        if limit != self.limit:
            self.limit = limit
            if self._on_change:
                self._on_change(limit)
            self._wake()

    def _wake(self) -> None:
        # Wake every waiter; each re-checks the limit (few waiters, simple and fair enough).
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)


# --- retry policy ------------------------------------------------------------

FailureKind = Literal["rate_limit", "quota", "server", "timeout", "connection"]


class _Failure(Exception):
    """A retryable failure of one attempt, carrying the error to raise if retries run out."""

    def __init__(self, kind: FailureKind, error: ApiError, *, retry_after: float | None = None) -> None:
        super().__init__(str(error))
        self.kind = kind
        self.error = error
        self.retry_after = retry_after


class _RetryPolicy:
    """When one call retries, how long it waits, when it gives up (one instance per call)."""

    def __init__(self, config: ClientConfig, stats: ClientStats, rng: random.Random, what: str) -> None:
        self.config = config
        self.stats = stats
        self.rng = rng
        self.what = what
        self.transient_failures = 0
        self.quota_waited = 0.0
        self.reason = ""

    def should_retry(self, state: tenacity.RetryCallState) -> bool:
        failure = state.outcome.exception() if state.outcome else None
        if not isinstance(failure, _Failure):
            return False
        if failure.kind == "quota":
            room = self.config.quota_wait - self.quota_waited
            if room <= 0 or (failure.retry_after is not None and failure.retry_after > room):
                return False
            return True
        self.transient_failures += 1
        return True

    def wait(self, state: tenacity.RetryCallState) -> float:
        failure = state.outcome.exception() if state.outcome else None
        assert isinstance(failure, _Failure)
        if failure.retry_after is not None:
            return failure.retry_after
        if failure.kind == "quota":
            # Refresh time unknown: look again every max_retry_wait while quota_wait lasts.
            return min(self.config.max_retry_wait, self.config.quota_wait - self.quota_waited)
        ceiling = self.config.backoff_base * 2 ** max(0, self.transient_failures - 1)
        return self.rng.uniform(0.0, min(self.config.max_retry_wait, ceiling))

    def should_stop(self, state: tenacity.RetryCallState) -> bool:
        failure = state.outcome.exception() if state.outcome else None
        assert isinstance(failure, _Failure)
        upcoming = state.upcoming_sleep
        if failure.kind == "quota":
            if self.quota_waited + upcoming > self.config.quota_wait:
                self.reason = f"quota_wait of {self.config.quota_wait:g} s used up"
                return True
            return False
        if self.transient_failures > self.config.max_retries:
            self.reason = f"after {state.attempt_number} attempts"
            return True
        if upcoming > self.config.max_retry_wait:
            self.reason = (
                f"the server asked to wait {upcoming:.0f} s, more than max_retry_wait "
                f"({self.config.max_retry_wait:g} s)"
            )
            return True
        # idle_for counts waits even when the sleep is faked (tests), wall time counts real ones.
        spent = max(state.seconds_since_start, state.idle_for)
        if spent + upcoming > self.config.total_retry_budget:
            self.reason = (
                f"after {state.attempt_number} attempts in {spent:.1f} s "
                f"(retry budget {self.config.total_retry_budget:g} s)"
            )
            return True
        return False

    def before_sleep(self, state: tenacity.RetryCallState) -> None:
        failure = state.outcome.exception() if state.outcome else None
        wait = state.upcoming_sleep
        self.stats.retries += 1
        self.stats.retry_wait += wait
        if isinstance(failure, _Failure) and failure.kind == "quota":
            self.quota_waited += wait
        log.info("%s: %s; retry %d in %.2f s", self.what, failure, state.attempt_number, wait)

    def final_error(self, failure: _Failure) -> ApiError:
        """The error to raise once the policy has given up on `failure`."""
        error = failure.error
        if failure.kind == "quota" or not self.reason:
            return error
        return type(error)(f"{error} ({self.reason})", status_code=error.status_code)


# --- the client --------------------------------------------------------------


class IOIntelligenceClient:
    """Async client for IO Intelligence (OpenAI-compatible, vLLM behind a gateway).

    Args:
        api_key: the key sent as `Authorization: Bearer ...`; never shown.
        config: URLs, timeouts, retry policy and concurrency.
        http: an `httpx.AsyncClient` to send through (tests pass one with a
            `MockTransport`); built here, with a keep-alive pool, if not given.
        sleep: how to wait between retries (tests pass a recorder).
        rng: randomness of the backoff jitter.
    """

    def __init__(
        self,
        api_key: str,
        config: ClientConfig = ClientConfig(),
        *,
        http: httpx.AsyncClient | None = None,
        sleep: Sleep | None = None,
        rng: random.Random | None = None,
    ) -> None:
        if not api_key or not api_key.strip():
            raise ConfigError("an API key is needed to call IO Intelligence", hint="set IOINTELLIGENCE_API_KEY")
        self.config = config
        self._key = _Secret(api_key.strip())
        self._timeout = httpx.Timeout(config.timeout, connect=config.connect_timeout)
        self._owns_http = http is None
        self._http = http or httpx.AsyncClient(
            timeout=self._timeout,
            limits=httpx.Limits(max_connections=config.concurrency + 2, max_keepalive_connections=config.concurrency),
            follow_redirects=False,
        )
        self._sleep: Sleep = sleep or asyncio.sleep
        self._rng = rng or random.Random()
        self.stats = ClientStats(concurrency=config.concurrency, min_concurrency=config.concurrency)
        self._limiter = AdaptiveLimiter(config.concurrency, on_change=self._on_limit_change)

    def __repr__(self) -> str:
        return f"IOIntelligenceClient(base_url={self.config.base_url!r}, api_key=<redacted>)"

    async def __aenter__(self) -> IOIntelligenceClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool if this client built it."""
        if self._owns_http:
            await self._http.aclose()

    # -- public calls ---------------------------------------------------------

    async def embeddings(
        self, model: str, inputs: Sequence[str], *, dimensions: int | None = None
    ) -> EmbeddingResult:
        """Embed `inputs` in one request (retries aside); vectors come back in input order.

        Raises:
            ContextLengthError: an input is longer than the model takes (server's count).
            ApiError: any other failure, see the module docstring.
        """
        inputs = list(inputs)
        if not inputs:
            return EmbeddingResult(np.zeros((0, dimensions or 0), dtype=np.float32), 0, model)
        body: dict[str, Any] = {"model": model, "input": inputs, "encoding_format": "base64"}
        if dimensions is not None:
            body["dimensions"] = dimensions
        what = f"POST /embeddings ({model}, {len(inputs)} inputs)"
        response = await self._call(self._request("POST", "/embeddings", body), model=model, what=what)
        payload = self._json(response, what)
        vectors = _decode_embeddings(payload, len(inputs), what)
        tokens = _int_or_zero((payload.get("usage") or {}).get("prompt_tokens"))
        self.stats.prompt_tokens += tokens
        return EmbeddingResult(vectors, tokens, str(payload.get("model") or model))

    async def chat(
        self,
        model: str,
        messages: list[dict[str, Any]],
        *,
        max_completion_tokens: int,
        temperature: float | None = None,
        **extra: Any,
    ) -> ChatResult:
        """One non-streamed chat completion; `extra` is passed through in the body."""
        body = _chat_body(model, messages, max_completion_tokens, temperature, extra, stream=False)
        what = f"POST /chat/completions ({model})"
        response = await self._call(self._request("POST", "/chat/completions", body), model=model, what=what)
        payload = self._json(response, what)
        choices = payload.get("choices") or [{}]
        choice = choices[0] if isinstance(choices[0], dict) else {}
        message = choice.get("message") or {}
        usage = _usage(payload.get("usage"))
        self.stats.prompt_tokens += usage.prompt_tokens
        self.stats.completion_tokens += usage.completion_tokens
        reasoning = message.get("reasoning_content") or message.get("reasoning")
        return ChatResult(
            content=message.get("content") or "",
            reasoning_content=reasoning or None,
            finish_reason=choice.get("finish_reason"),
            usage=usage,
            model=str(payload.get("model") or model),
        )

    async def chat_stream(
        self,
        model: str,
        messages: list[dict[str, Any]],
        *,
        max_completion_tokens: int,
        temperature: float | None = None,
        **extra: Any,
    ) -> AsyncIterator[ChatDelta]:
        """Stream a chat completion (SSE), yielding `ChatDelta`s.

        Failures before the first byte are retried; a stream cut midway raises
        `ServiceUnavailableError` (resending would repeat text). Close the
        iterator if you stop early (`contextlib.aclosing`) so its connection
        and concurrency slot are freed at once.
        """
        body = _chat_body(model, messages, max_completion_tokens, temperature, extra, stream=True)
        what = f"POST /chat/completions stream ({model})"
        request = self._request("POST", "/chat/completions", body)
        request.headers["Accept"] = "text/event-stream"
        response = await self._call(request, model=model, what=what, stream=True)
        try:
            async for delta in self._read_events(response, model, what):
                yield delta
        finally:
            await response.aclose()
            self._limiter.release()

    async def list_models(self) -> list[ModelInfo]:
        """Models the API serves, following pagination; figures it does not give stay None."""
        known = {m.id: m for m in default_catalog()}
        models: dict[str, ModelInfo] = {}
        url, params = self._url("/models"), None
        for _ in range(self.config.max_model_pages):
            what = "GET /models"
            request = self._http.build_request(
                "GET", url, params=params, headers=self._headers(), timeout=self._timeout
            )
            payload = self._json(await self._call(request, model=None, what=what), what)
            records = payload.get("data") if isinstance(payload, dict) else payload
            if not isinstance(records, list):
                raise ApiError(f"{what}: unexpected response shape (no `data` list)")
            before = len(models)
            for record in records:
                info = _model_from_record(record, known)
                if info is not None:
                    models.setdefault(info.id, info)
            following = self._next_page(payload, url, records) if isinstance(payload, dict) else None
            if following is None or len(models) == before:
                break
            url, params = following
        return list(models.values())

    # -- one HTTP call and the policy around it -------------------------------

    def _url(self, path: str) -> str:
        return self.config.base_url.rstrip("/") + path

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._key.reveal()}", "Accept": "application/json"}

    def _request(self, method: str, path: str, body: Mapping[str, Any]) -> httpx.Request:
        return self._http.build_request(
            method, self._url(path), json=dict(body), headers=self._headers(), timeout=self._timeout
        )

    async def _call(
        self, request: httpx.Request, *, model: str | None, what: str, stream: bool = False
    ) -> httpx.Response:
        """`_send` under the retry policy; raises the final `ApiError` when it gives up."""
        policy = _RetryPolicy(self.config, self.stats, self._rng, what)
        retrying = tenacity.AsyncRetrying(
            retry=policy.should_retry,
            wait=policy.wait,
            stop=policy.should_stop,
            before_sleep=policy.before_sleep,
            sleep=self._sleep,
            reraise=True,
        )
        try:
            return await retrying(self._send, request, model=model, what=what, stream=stream)
        except _Failure as failure:
            raise policy.final_error(failure) from failure.__cause__

    async def _send(
        self, request: httpx.Request, *, model: str | None, what: str, stream: bool = False
    ) -> httpx.Response:
        """Make exactly one HTTP call and translate its outcome.

        Returns the response on 2xx (for a stream, still open and holding its
        limiter slot: the caller releases both). Raises `_Failure` for what may
        be retried and an `ApiError` for what may not.
        """
        epoch = await self._limiter.acquire()
        outcome: Outcome = "failed"
        keep_slot = False
        try:
            self.stats.requests += 1
            try:
                response = await self._http.send(request, stream=stream)
                if not response.is_success and stream:
                    await response.aread()
                    await response.aclose()
            except httpx.TimeoutException as exc:
                self.stats.transport_errors += 1
                error = ServiceUnavailableError(f"{what}: timed out ({type(exc).__name__})")
                raise _Failure("timeout", error) from exc
            except httpx.TransportError as exc:
                self.stats.transport_errors += 1
                detail = _redact(str(exc) or type(exc).__name__, self._key)
                error = ServiceUnavailableError(f"{what}: connection failed ({detail})")
                raise _Failure("connection", error) from exc
            if response.is_success:
                outcome = "ok"
                self.stats.succeeded += 1
                keep_slot = stream
                return response
            if response.status_code == 429:
                outcome = "throttled"
            raise self._error_for(response, model, what)
        finally:
            self._limiter.record(epoch, outcome)
            if not keep_slot:
                self._limiter.release()

    def _error_for(self, response: httpx.Response, model: str | None, what: str) -> Exception:
        """The `ApiError` (or retryable `_Failure`) for a non-2xx response."""
        status = response.status_code
        try:
            body = response.json()
        except ValueError:
            body = None
        message = _message_from_body(body) or response.text.strip()[:300] or response.reason_phrase
        message = _redact(message, self._key)
        retry_after = parse_delay(response.headers.get("retry-after"))
        if status == 429:
            self.stats.rate_limited += 1
            reset = retry_after
            for name in _RESET_HEADERS:
                if reset is None:
                    reset = parse_delay(response.headers.get(name))
            # A window that reopens only after our whole retry budget is a pool refresh, not a burst limit.
            far_reset = retry_after is None and reset is not None and reset > self.config.total_retry_budget
            if _QUOTA_WORDS.search(message) or far_reset:
                when = f"; it refreshes in {_human_seconds(reset)}" if reset is not None else ""
                error: ApiError = QuotaExhaustedError(f"{what}: quota exhausted{when}: {message}")
                return _Failure("quota", error, retry_after=reset)
            return _Failure("rate_limit", RateLimitError(f"{what}: rate limited (429): {message}"), retry_after=retry_after)
        if status >= 500 or status == 408:
            self.stats.server_errors += 1
            error = ServiceUnavailableError(f"{what}: server error {status}: {message}", status_code=status)
            return _Failure("server", error, retry_after=retry_after)
        if status == 400:
            parsed = parse_context_length_message(message)
            if parsed is not None:
                limit, requested = parsed
                error = ContextLengthError(f"{what}: {message}", limit=limit, requested=requested)
                error.hint = "the input is longer than the model takes; split it or shorten the prompt"
                return error
        if status in (400, 413, 422):
            return BadRequestError(
                f"{what}: the API refused the request ({status}): {message}",
                status_code=status,
                hint="iorag sent a request the API does not accept; please report it with this message",
            )
        if status in (401, 403):
            return AuthenticationError(f"{what}: the API refused the key ({status}): {message}", status_code=status)
        if status == 402:
            return PaymentRequiredError(f"{what}: {model!r} needs a higher tier (402): {message}")
        if status == 404:
            if model is None:
                return ApiError(f"{what}: not found (404): {message}", status_code=404, hint="check IOINTELLIGENCE_BASE_URL")
            return ModelNotFoundError(f"{what}: unknown model {model!r} (404): {message}")
        return ApiError(f"{what}: unexpected status {status}: {message}", status_code=status)

    def _json(self, response: httpx.Response, what: str) -> Any:
        try:
            return response.json()
        except ValueError as exc:
            raise ApiError(f"{what}: the response is not JSON") from exc

    def _on_limit_change(self, limit: int) -> None:
        self.stats.concurrency = limit
        self.stats.min_concurrency = min(self.stats.min_concurrency, limit)
        log.info("concurrency limit now %d", limit)

    # -- streaming and pagination ---------------------------------------------

    async def _read_events(self, response: httpx.Response, model: str, what: str) -> AsyncIterator[ChatDelta]:
        """Parse SSE `data:` events until `[DONE]` (or the end of the body)."""
        data: list[str] = []
        try:
            async for line in response.aiter_lines():
                if line.startswith(":"):
                    continue  # an SSE comment (keep-alive)
                if line.startswith("data:"):
                    data.append(line[5:].removeprefix(" "))
                    continue
                if line.strip() or not data:
                    continue  # other fields (event:, id:) carry nothing we use
                event, data = "\n".join(data), []
                if event.strip() == "[DONE]":
                    return
                for delta in self._deltas(event, model, what):
                    yield delta
            if data and "\n".join(data).strip() != "[DONE]":
                for delta in self._deltas("\n".join(data), model, what):
                    yield delta
        except httpx.TransportError as exc:
            raise ServiceUnavailableError(f"{what}: the stream was cut ({type(exc).__name__})") from exc

    def _deltas(self, event: str, model: str, what: str) -> list[ChatDelta]:
        try:
            chunk = json.loads(event)
        except ValueError as exc:
            raise ApiError(f"{what}: unreadable stream event") from exc
        if not isinstance(chunk, dict):
            return []
        if "error" in chunk:
            message = _redact(_message_from_body(chunk), self._key)
            parsed = parse_context_length_message(message)
            if parsed:
                raise ContextLengthError(f"{what}: {message}", limit=parsed[0], requested=parsed[1])
            raise ApiError(f"{what}: error in stream: {message}")
        deltas: list[ChatDelta] = []
        for choice in chunk.get("choices") or []:
            delta = choice.get("delta") or {}
            reasoning = delta.get("reasoning_content") or delta.get("reasoning")
            if reasoning:
                deltas.append(ChatDelta(reasoning=reasoning))
            if delta.get("content"):
                deltas.append(ChatDelta(content=delta["content"]))
            if choice.get("finish_reason"):
                deltas.append(ChatDelta(finish_reason=choice["finish_reason"]))
        if chunk.get("usage"):
            usage = _usage(chunk["usage"])
            self.stats.prompt_tokens += usage.prompt_tokens
            self.stats.completion_tokens += usage.completion_tokens
            deltas.append(ChatDelta(usage=usage))
        return deltas

    def _next_page(self, payload: dict[str, Any], url: str, records: list[Any]) -> tuple[str, dict[str, Any] | None] | None:
        """Where the next page of /models is, if the response says there is one.

        Understood, in order: a `next` link (absolute, or relative to this page;
        also under `links` or `pagination`), `has_more` with a cursor
        (`last_id`, else the last record's id) sent back as `after`, and
        `page` with `total_pages` sent back as `page`.
        """
        link = payload.get("next")
        for holder in ("links", "pagination"):
            if link is None and isinstance(payload.get(holder), dict):
                link = payload[holder].get("next")
        if isinstance(link, str) and link:
            target = urljoin(url, link)
            if urlsplit(target)[:2] != urlsplit(self.config.base_url)[:2]:
                # Never send the key to another host.
                raise ApiError(f"GET /models: refusing to follow pagination to another host ({urlsplit(target).netloc})")
            return target, None
        if payload.get("has_more") is True:
            cursor = payload.get("last_id")
            if not cursor and records and isinstance(records[-1], dict):
                cursor = records[-1].get("id")
            return (self._url("/models"), {"after": cursor}) if cursor else None
        page, total = payload.get("page"), payload.get("total_pages")
        if isinstance(page, int) and isinstance(total, int) and page < total:
            return self._url("/models"), {"page": page + 1}
        return None


# --- body building and parsing -----------------------------------------------


def _chat_body(
    model: str,
    messages: list[dict[str, Any]],
    max_completion_tokens: int,
    temperature: float | None,
    extra: Mapping[str, Any],
    *,
    stream: bool,
) -> dict[str, Any]:
    body: dict[str, Any] = {"model": model, "messages": messages, "max_completion_tokens": max_completion_tokens}
    if temperature is not None:
        body["temperature"] = temperature
    body.update(extra)
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return body


def _decode_embeddings(payload: Any, expected: int, what: str) -> np.ndarray:
    """(n, dims) float32 rows ordered by each item's `index` (base64 little-endian float32 or lists)."""
    data = payload.get("data") if isinstance(payload, dict) else None
    if not isinstance(data, list) or len(data) != expected:
        got = len(data) if isinstance(data, list) else "no"
        raise ApiError(f"{what}: expected {expected} embeddings, got {got}")
    rows: list[np.ndarray | None] = [None] * expected
    for position, item in enumerate(data):
        index = item.get("index", position) if isinstance(item, dict) else None
        if not isinstance(index, int) or not 0 <= index < expected or rows[index] is not None:
            raise ApiError(f"{what}: bad or repeated embedding index {index!r}")
        raw = item.get("embedding")
        try:
            if isinstance(raw, str):
                row = np.frombuffer(base64.b64decode(raw, validate=True), dtype="<f4")
            elif isinstance(raw, list):
                row = np.asarray(raw, dtype=np.float32)
            else:
                raise ValueError("no embedding")
        except (ValueError, binascii.Error) as exc:
            raise ApiError(f"{what}: unreadable embedding at index {index}") from exc
        rows[index] = row
    dims = {row.shape[0] for row in rows if row is not None}
    if len(dims) != 1:
        raise ApiError(f"{what}: embeddings of different sizes {sorted(dims)}")
    return np.vstack(rows).astype(np.float32)  # type: ignore[arg-type]


def _usage(raw: Any) -> Usage:
    raw = raw if isinstance(raw, dict) else {}
    return Usage(_int_or_zero(raw.get("prompt_tokens")), _int_or_zero(raw.get("completion_tokens")))


def _int_or_zero(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _positive_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    return value if isinstance(value, int) and value > 0 else None


_EMBEDDING_HINTS = ("type", "model_type", "kind", "task", "mode", "category", "object")
_EMBEDDING_LISTS = ("capabilities", "tasks", "endpoints", "supported_endpoints")


def _says_embedding(*records: Mapping[str, Any]) -> bool:
    for record in records:
        for key in _EMBEDDING_HINTS:
            value = record.get(key)
            if isinstance(value, str) and "embed" in value.lower():
                return True
        for key in _EMBEDDING_LISTS:
            values = record.get(key)
            if isinstance(values, list) and any(isinstance(v, str) and "embed" in v.lower() for v in values):
                return True
    return False


def _model_from_record(record: Any, known: Mapping[str, ModelInfo]) -> ModelInfo | None:
    """A ModelInfo from one /models record of either shape; None if it has no id."""
    if not isinstance(record, dict):
        return None
    model_id = record.get("id") or record.get("model")
    if not isinstance(model_id, str) or not model_id.strip():
        return None
    meta = record.get("metadata") if isinstance(record.get("metadata"), dict) else {}

    def first(*keys: str) -> int | None:
        for holder in (record, meta):
            for key in keys:
                value = _positive_int(holder.get(key))
                if value is not None:
                    return value
        return None

    catalog_entry = known.get(model_id)
    is_embedding = (
        (catalog_entry is not None and catalog_entry.kind == "embedding")
        or _says_embedding(record, meta)
        or "embed" in model_id.lower()
    )
    return ModelInfo(
        id=model_id,
        kind="embedding" if is_embedding else "chat",
        context_length=first("max_model_len", "context_window", "context_length", "max_context_length"),
        tokenizer=catalog_entry.tokenizer if catalog_entry else guess_tokenizer(model_id),
        max_output_tokens=first("max_tokens", "max_output_tokens", "max_completion_tokens"),
        dims=first("dimensions", "embedding_dimensions", "dims"),
        query_template=catalog_entry.query_template if catalog_entry else "{query}",
        source="api",
        listed=catalog_entry.listed if catalog_entry else "api",
    )


def _human_seconds(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


__all__ = [
    "AdaptiveLimiter",
    "ChatDelta",
    "ChatResult",
    "ClientConfig",
    "ClientStats",
    "DEFAULT_BASE_URL",
    "EmbeddingResult",
    "IOIntelligenceClient",
    "Usage",
    "parse_context_length_message",
    "parse_delay",
]
