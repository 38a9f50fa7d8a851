"""Translating what the API answered into the `ApiError` tree, with the key redacted.

    status        error                      retried
    429           RateLimitError             yes (Retry-After, else backoff)
    429 quota     QuotaExhaustedError        only while quota_wait lasts
    408, 5xx      ServiceUnavailableError    yes
    400 context   ContextLengthError         no (the caller splits or shrinks)
    400/413/422   BadRequestError            no
    401/403       AuthenticationError        no
    402           PaymentRequiredError       no
    404           ModelNotFoundError         no (ApiError when no model was named)

A 429 is an exhausted quota when its message speaks of a quota or credits,
or when it has no Retry-After and its `x-ratelimit-reset*` lies beyond the
whole retry budget (a pool refresh, not a burst limit).
"""

from __future__ import annotations

import re
from typing import Any

import httpx

from ..errors import (
    ApiError,
    AuthenticationError,
    BadRequestError,
    ContextLengthError,
    ModelNotFoundError,
    PaymentRequiredError,
    QuotaExhaustedError,
    RateLimitError,
    ServiceUnavailableError,
)
from .retry import Failure, human_seconds, parse_delay


class Secret:
    """Holds the key; its repr never shows it (tracebacks with locals, debuggers)."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"


_BEARER = re.compile(r"(?i)(bearer\s+)[^\s\"',;]+")


def redact(text: str, secret: Secret) -> str:
    """The text with the key and any bearer token replaced by ***."""
    key = secret.reveal()
    if key:
        text = text.replace(key, "***")
    return _BEARER.sub(r"\1***", text)


def message_from_body(body: Any) -> str:
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


_QUOTA_WORDS = re.compile(r"quota|credits?\b|daily (?:token )?limit", re.I)
_RESET_HEADERS = ("x-ratelimit-reset", "x-ratelimit-reset-tokens", "x-ratelimit-reset-requests")


def error_for_response(
    response: httpx.Response,
    *,
    model: str | None,
    what: str,
    secret: Secret,
    total_retry_budget: float,
) -> ApiError | Failure:
    """The `ApiError` for a non-2xx response, or a retryable `Failure` wrapping one.

    Args:
        response: the answer (its body already read).
        model: the model the request named, if any (for 402/404 messages).
        what: the call, e.g. `POST /embeddings (model, 8 inputs)`, leading every message.
        secret: the key, redacted from every message.
        total_retry_budget: a 429 whose reset lies beyond this is an exhausted quota.
    """
    status = response.status_code
    try:
        body = response.json()
    except ValueError:
        body = None
    message = message_from_body(body) or response.text.strip()[:300] or response.reason_phrase
    message = redact(message, secret)
    retry_after = parse_delay(response.headers.get("retry-after"))
    if status == 429:
        reset = retry_after
        for name in _RESET_HEADERS:
            if reset is None:
                reset = parse_delay(response.headers.get(name))
        far_reset = retry_after is None and reset is not None and reset > total_retry_budget
        if _QUOTA_WORDS.search(message) or far_reset:
            when = f"; it refreshes in {human_seconds(reset)}" if reset is not None else ""
            quota = QuotaExhaustedError(f"{what}: quota exhausted{when}: {message}", retry_after=reset)
            return Failure("quota", quota, retry_after=reset)
        limited = RateLimitError(f"{what}: rate limited (429): {message}", retry_after=retry_after)
        return Failure("rate_limit", limited, retry_after=retry_after)
    if status >= 500 or status == 408:
        error = ServiceUnavailableError(f"{what}: server error {status}: {message}", status_code=status)
        return Failure("server", error, retry_after=retry_after)
    if status == 400:
        parsed = parse_context_length_message(message)
        if parsed is not None:
            limit, requested = parsed
            context = ContextLengthError(f"{what}: {message}", limit=limit, requested=requested)
            context.hint = "the input is longer than the model takes; split it or shorten the prompt"
            return context
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
            return ApiError(
                f"{what}: not found (404): {message}", status_code=404, hint="check IOINTELLIGENCE_BASE_URL"
            )
        return ModelNotFoundError(f"{what}: unknown model {model!r} (404): {message}")
    return ApiError(f"{what}: unexpected status {status}: {message}", status_code=status)


__all__ = [
    "Secret",
    "error_for_response",
    "message_from_body",
    "parse_context_length_message",
    "redact",
]
