"""IOIntelligenceClient: embeddings, chat (plain and streamed) and models over httpx.

Transport is kept apart from policy. `_send()` makes exactly one HTTP call and
translates what came back (a status and body, or an httpx error) into the
`ApiError` tree (`errors.py`); the retry policy (`retry.py`, on tenacity), the
adaptive concurrency limit (`limiter.py`), the rate-limit window
(`pacing.py`) and the circuit breaker (`breaker.py`) wrap it. What differs
between upstreams (parameter names, error codes, health, tenant header) comes
from the provider profile (`providers/`).

4xx answers are never retried. A refused connection or an unknown host fails
at once, naming the host. A chat request whose body may have reached the
upstream (the connection broke after sending) is not sent again: it may have
been answered and billed. The API key never appears in a repr, an exception
message or a log line; messages never carry the upstream's body.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import random
import socket
from typing import Any, AsyncGenerator, Awaitable, Callable, Mapping, Sequence

import httpx
import numpy as np
import tenacity

from ..catalog import ModelInfo, default_catalog
from ..errors import ApiError, ConfigError, InvalidResponseError, ServiceUnavailableError
from .breaker import CircuitBreaker
from .config import ClientConfig
from .errors import Secret, error_for_response, safe_excerpt
from .limiter import AdaptiveLimiter, Outcome
from .logfilter import install as install_log_filter
from .pacing import OnWait, RateWindow
from .models import model_from_record, next_page
from .results import ChatDelta, ChatResult, ClientStats, EmbeddingResult
from .retry import Failure, RetryPolicy
from .wire import chat_body, decode_embeddings, int_or_zero, read_events, usage_from

log = logging.getLogger("indexer.api")
install_log_filter()

Sleep = Callable[[float], Awaitable[None]]


class IOIntelligenceClient:
    """Async client for IO Intelligence (OpenAI-compatible, vLLM behind a gateway).

    Args:
        api_key: the key sent as `Authorization: Bearer ...`; never shown (default: `config.api_key`).
        config: provider, URLs, timeouts, retry policy, concurrency, breaker.
        http: an `httpx.AsyncClient` to send through (tests pass one with a
            `MockTransport`); built here, with a keep-alive pool, if not given.
        sleep: how to wait between retries and for a rate-limit window (tests pass a recorder).
        rng: randomness of the backoff jitter.
        breaker: a circuit breaker shared with other clients of the same upstream
            (default: one of this client's own).
        on_wait: called with the seconds about to be waited for the rate-limit window
            (the CLI shows it on the progress line).
    """

    def __init__(
        self,
        api_key: str | None = None,
        config: ClientConfig = ClientConfig(),
        *,
        http: httpx.AsyncClient | None = None,
        sleep: Sleep | None = None,
        rng: random.Random | None = None,
        breaker: CircuitBreaker | None = None,
        on_wait: OnWait | None = None,
    ) -> None:
        api_key = api_key or config.api_key
        self.profile = config.profile
        if not api_key or not api_key.strip():
            raise ConfigError(f"an API key is needed to call {self.profile.title}", hint="set IOINTELLIGENCE_API_KEY")
        self.config = config
        self._key = Secret(api_key.strip())
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
        self.breaker = breaker or CircuitBreaker(config.breaker_threshold, config.breaker_cooldown)
        self.window = RateWindow(sleep=self._sleep, on_wait=on_wait, max_wait=config.max_retry_wait)

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
            ApiError: any other failure, see `errors.py`.
        """
        inputs = list(inputs)
        if not inputs:
            return EmbeddingResult(np.zeros((0, dimensions or 0), dtype=np.float32), 0, model)
        body: dict[str, Any] = {"model": model, "input": inputs, "encoding_format": "base64"}
        if dimensions is not None:
            body["dimensions"] = dimensions
        what = f"POST /embeddings ({model}, {len(inputs)} inputs)"
        response = await self._call(self._request("POST", "/embeddings", body), model=model, what=what, idempotent=True)
        payload = self._json(response, what)
        vectors = decode_embeddings(payload, len(inputs), what)
        tokens = int_or_zero((payload.get("usage") or {}).get("prompt_tokens"))
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
        body = chat_body(
            model, messages, max_completion_tokens, temperature, extra, stream=False,
            tokens_param=self.profile.completion_tokens_param,
        )
        what = f"POST /chat/completions ({model})"
        response = await self._call(self._request("POST", "/chat/completions", body), model=model, what=what)
        payload = self._json(response, what)
        choices = payload.get("choices") or [{}]
        choice = choices[0] if isinstance(choices[0], dict) else {}
        message = choice.get("message") or {}
        usage = usage_from(payload.get("usage"))
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
    ) -> AsyncGenerator[ChatDelta, None]:
        """Stream a chat completion (SSE), yielding `ChatDelta`s.

        Failures before the first byte are retried; a stream cut midway raises
        `ServiceUnavailableError` (resending would repeat text). Close the
        iterator if you stop early (`contextlib.aclosing`) so its connection
        and concurrency slot are freed at once.
        """
        body = chat_body(
            model, messages, max_completion_tokens, temperature, extra, stream=True,
            tokens_param=self.profile.completion_tokens_param,
        )
        what = f"POST /chat/completions stream ({model})"
        request = self._request("POST", "/chat/completions", body)
        request.headers["Accept"] = "text/event-stream"
        response = await self._call(request, model=model, what=what, stream=True)
        try:
            async for delta in read_events(response, what, self._key):
                if delta.usage is not None:
                    self.stats.prompt_tokens += delta.usage.prompt_tokens
                    self.stats.completion_tokens += delta.usage.completion_tokens
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
            payload = self._json(await self._call(request, model=None, what=what, idempotent=True), what)
            records = payload.get("data") if isinstance(payload, dict) else payload
            if not isinstance(records, list):
                raise InvalidResponseError(f"{what}: unexpected response shape (no `data` list)")
            before = len(models)
            for record in records:
                info = model_from_record(record, known)
                if info is not None:
                    models.setdefault(info.id, info)
            following = next_page(payload, url, records, self._url("/models")) if isinstance(payload, dict) else None
            if following is None or len(models) == before:
                break
            url, params = following
        return list(models.values())

    async def health(self) -> dict[str, Any] | None:
        """The provider's health answer (one try, 5 s at most); None if it has none or it failed."""
        if self.profile.health_path is None:
            return None
        try:
            response = await self._http.get(
                self._url(self.profile.health_path), headers=self._headers(), timeout=5.0
            )
            payload = response.json()
        except (httpx.HTTPError, ValueError):
            return None
        return payload if isinstance(payload, dict) else None

    # -- one HTTP call and the policy around it -------------------------------

    def _url(self, path: str) -> str:
        return self.config.base_url.rstrip("/") + path

    def _headers(self) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self._key.reveal()}", "Accept": "application/json"}
        if self.config.tenant and self.profile.tenant_header:
            headers[self.profile.tenant_header] = self.config.tenant
        return headers

    def _request(self, method: str, path: str, body: Mapping[str, Any]) -> httpx.Request:
        return self._http.build_request(
            method, self._url(path), json=dict(body), headers=self._headers(), timeout=self._timeout
        )

    async def _call(
        self, request: httpx.Request, *, model: str | None, what: str, stream: bool = False, idempotent: bool = False
    ) -> httpx.Response:
        """`_send` under the breaker and the retry policy; raises the final `ApiError` when it gives up."""
        self.breaker.check(self.config.host, what)
        policy = RetryPolicy(self.config, self.stats, self._rng, what)
        retrying = tenacity.AsyncRetrying(
            retry=policy.should_retry,
            wait=policy.wait,
            stop=policy.should_stop,
            before_sleep=policy.before_sleep,
            sleep=self._sleep,
            reraise=True,
        )
        try:
            response: httpx.Response = await retrying(
                self._send, request, model=model, what=what, stream=stream, idempotent=idempotent
            )
        except Failure as failure:
            error = policy.final_error(failure)
            if isinstance(error, ServiceUnavailableError):
                self.breaker.failure(failure.kind)
            else:
                self.breaker.success()  # it answered: the upstream is up, however unhelpful
            raise error from failure.__cause__
        except ServiceUnavailableError as exc:
            self.breaker.failure(getattr(exc, "reason", "unreachable"))
            raise
        except ApiError:
            self.breaker.success()
            raise
        except BaseException:
            self.breaker.abandon()  # cancelled: neither proof of life nor of death
            raise
        self.breaker.success()
        return response

    async def _send(
        self, request: httpx.Request, *, model: str | None, what: str, stream: bool = False, idempotent: bool = False
    ) -> httpx.Response:
        """Make exactly one HTTP call and translate its outcome.

        Returns the response on 2xx (for a stream, still open and holding its
        limiter slot: the caller releases both). Raises `Failure` for what may
        be retried and an `ApiError` for what may not.
        """
        epoch = await self._limiter.acquire()
        outcome: Outcome = "failed"
        keep_slot = False
        headers: httpx.Headers | None = None
        try:
            await self.window.acquire()
        except BaseException:
            self._limiter.release()
            raise
        try:
            self.stats.requests += 1
            try:
                response = await self._http.send(request, stream=stream)
                headers = response.headers
                if not response.is_success and stream:
                    await response.aread()
                    await response.aclose()
            except httpx.HTTPError as exc:
                self.stats.transport_errors += 1
                raise self._transport_failure(exc, what, idempotent) from exc
            if response.is_success:
                outcome = "ok"
                self.stats.succeeded += 1
                keep_slot = stream
                return response
            status = response.status_code
            if status == 429:
                outcome = "throttled"
                self.stats.rate_limited += 1
            elif status >= 500 or status == 408:
                self.stats.server_errors += 1
            result = error_for_response(
                response,
                model=model,
                what=what,
                secret=self._key,
                total_retry_budget=self.config.total_retry_budget,
                provider=self.profile,
            )
            if isinstance(result, Failure) and result.kind == "unavailable":
                await self._consult_health(result, what)
            raise result
        finally:
            self.window.release(headers)
            self._limiter.record(epoch, outcome)
            if not keep_slot:
                self._limiter.release()

    def _transport_failure(self, exc: httpx.HTTPError, what: str, idempotent: bool) -> Exception:
        """What an httpx error means: fail at once, or a retryable `Failure`."""
        host = self.config.host
        unreachable = _unreachable(exc)
        if unreachable:
            error = ServiceUnavailableError(
                f"{what}: cannot reach {host}: {unreachable}",
                hint="check IOINTELLIGENCE_BASE_URL and that the API is up",
            )
            error.reason = unreachable  # type: ignore[attr-defined]
            return error
        sent = not isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout))
        if sent and not idempotent:
            error = ServiceUnavailableError(
                f"{what}: the connection to {host} broke after the request was sent ({type(exc).__name__}); "
                "not sent again, as the API may have answered and billed it",
                hint="try again",
            )
            error.reason = "connection broke"  # type: ignore[attr-defined]
            return error
        if isinstance(exc, httpx.TimeoutException):
            return Failure("timeout", ServiceUnavailableError(f"{what}: {host} timed out ({type(exc).__name__})"))
        detail = type(exc).__name__
        return Failure("connection", ServiceUnavailableError(f"{what}: connection to {host} failed ({detail})"))

    async def _consult_health(self, failure: Failure, what: str) -> None:
        """Ask the provider's health endpoint before waiting out an "unavailable" answer."""
        report = await self.health()
        if report is None:
            note = "health endpoint unreachable"
        else:
            status = report.get("status")
            # Only a word from the upstream, never free text: a status like `ok` or `degraded`.
            word = isinstance(status, str) and status.replace("_", "").replace("-", "").isalpha() and len(status) <= 20
            note = f"health status {status}" if word else "health answered"
        log.info("%s: %s; %s", what, failure.error, safe_excerpt(note, self._key))
        error = failure.error
        failure.error = type(error)(f"{error}; {note}", status_code=error.status_code, hint=error.hint)

    def _json(self, response: httpx.Response, what: str) -> Any:
        try:
            return response.json()
        except ValueError as exc:
            raise InvalidResponseError(f"{what}: the response is not valid JSON") from exc

    def _on_limit_change(self, limit: int) -> None:
        self.stats.concurrency = limit
        self.stats.min_concurrency = min(self.stats.min_concurrency, limit)
        log.info("concurrency limit now %d", limit)


def _unreachable(exc: BaseException) -> str | None:
    """"connection refused" or "unknown host" when that is what `exc` comes from (nothing to retry)."""
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            break
        if isinstance(seen, socket.gaierror):
            return "unknown host (DNS lookup failed)"
        if isinstance(seen, ConnectionRefusedError) or getattr(seen, "errno", None) == errno.ECONNREFUSED:
            return "connection refused"
        seen = seen.__cause__ or seen.__context__
    text = str(exc).lower()
    if "connection refused" in text:
        return "connection refused"
    if "name or service not known" in text or "nodename nor servname" in text or "name resolution" in text:
        return "unknown host (DNS lookup failed)"
    return None


__all__ = ["IOIntelligenceClient", "Sleep"]
