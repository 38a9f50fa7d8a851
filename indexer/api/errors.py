"""Translating what the API answered into the `ApiError` tree, in iorag's own words.

    status        error                      retried
    429           RateLimitError             yes (Retry-After, else backoff)
    429 quota     QuotaExhaustedError        only while quota_wait lasts
    403 quota     QuotaExhaustedError        the same (a provider's quota code, e.g. IIO tier_exceeded)
    408, 5xx      ServiceUnavailableError    yes (a provider's "unavailable" code waits its documented delay)
    400 context   ContextLengthError         no (the caller splits or shrinks)
    400/413/422   BadRequestError            no
    401/403       AuthenticationError        no
    402           PaymentRequiredError       no
    404           ModelNotFoundError         no (ApiError when no model was named)
    422 model     ModelNotFoundError         no (a provider's model code, e.g. IIO invalid_model)

Messages never carry the upstream's body: an HTML page, a traceback or an
echoed key stays out of what users and clients see. Only facts iorag has
parsed from it appear (a context length, an error code such as
`tier_exceeded`). The body, redacted first and cut after, goes to the debug log.

A 429 is an exhausted quota when its message speaks of a quota or credits,
or when it has no Retry-After and its `x-ratelimit-reset*` lies beyond the
whole retry budget (a pool refresh, not a burst limit).
"""

from __future__ import annotations

import logging
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
from .providers import Provider
from .retry import Failure, human_seconds, parse_delay

log = logging.getLogger("indexer.api")

#: Shortest piece of the key that is redacted wherever it appears.
REDACT_MIN = 8
#: How much of an upstream body the debug log keeps (after redaction).
LOGGED_BODY_CHARS = 300


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
    """The text with every piece of the key of `REDACT_MIN`+ characters, and any bearer token, as ***.

    Run it on the whole text before any cut, so a key straddling the cut
    cannot survive in part.
    """
    key = secret.reveal()
    if len(key) >= REDACT_MIN and text:
        pieces = {key[i : i + REDACT_MIN] for i in range(len(key) - REDACT_MIN + 1)}
        hidden = [False] * len(text)
        for i in range(len(text) - REDACT_MIN + 1):
            if text[i : i + REDACT_MIN] in pieces:
                hidden[i : i + REDACT_MIN] = [True] * REDACT_MIN
        if any(hidden):
            out: list[str] = []
            for i, char in enumerate(text):
                if not hidden[i]:
                    out.append(char)
                elif i == 0 or not hidden[i - 1]:
                    out.append("***")
            text = "".join(out)
    elif key:
        text = text.replace(key, "***")
    return _BEARER.sub(r"\1***", text)


def safe_excerpt(text: str, secret: Secret, limit: int = LOGGED_BODY_CHARS) -> str:
    """Redacted, then cut: an upstream text fit for the debug log."""
    flat = " ".join(redact(text, secret).split())
    return flat if len(flat) <= limit else flat[:limit] + "..."


_CODE = re.compile(r"^[a-z][a-z0-9_.-]{1,47}$")


def error_code(body: Any) -> str | None:
    """The machine-readable code in an error body (`error.code`, `code`, or `error` as a word)."""
    if not isinstance(body, dict):
        return None
    error = body.get("error")
    candidates = [error.get("code"), error.get("type")] if isinstance(error, dict) else [error]
    candidates += [body.get("code")]
    for value in candidates:
        if isinstance(value, str) and _CODE.match(value):
            return value
    return None


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
    provider: Provider,
) -> ApiError | Failure:
    """The `ApiError` for a non-2xx response, or a retryable `Failure` wrapping one.

    Args:
        response: the answer (its body already read).
        model: the model the request named, if any (for 402/404/422 messages).
        what: the call, e.g. `POST /embeddings (model, 8 inputs)`, leading every message.
        secret: the key, redacted from anything logged.
        total_retry_budget: a 429 whose reset lies beyond this is an exhausted quota.
        provider: the upstream's profile (what its error codes mean).
    """
    status = response.status_code
    try:
        body = response.json()
    except ValueError:
        body = None
    upstream = message_from_body(body) or response.text or ""
    log.debug("%s: upstream answered %d: %s", what, status, safe_excerpt(upstream, secret))
    code = error_code(body)
    meaning = provider.error_codes.get(code or "")
    tag = f"{status} {code}" if meaning else str(status)
    retry_after = parse_delay(response.headers.get("retry-after"))
    if meaning == "quota":
        reset = retry_after if retry_after is not None else parse_delay(response.headers.get("x-ratelimit-reset"))
        when = f"; it resets in {human_seconds(reset)}" if reset is not None else ""
        quota = QuotaExhaustedError(
            f"{what}: {provider.title}: {provider.quota_words} ({tag}){when}", retry_after=reset, hint=provider.quota_hint
        )
        return Failure("quota", quota, retry_after=reset)
    if meaning == "model":
        return ModelNotFoundError(
            f"{what}: {provider.title} does not serve model {model!r} to this key ({tag})",
            status_code=status,
            hint="run `iorag models` to list the models you can use",
        )
    if meaning == "auth":
        return AuthenticationError(f"{what}: {provider.title} refused the key ({tag})", status_code=status)
    if meaning == "unavailable":
        wait = retry_after if retry_after is not None else provider.unavailable_wait
        error = ServiceUnavailableError(f"{what}: {provider.title} is unavailable ({tag})", status_code=status)
        return Failure("unavailable", error, retry_after=wait)
    if status == 429:
        reset = retry_after
        for name in _RESET_HEADERS:
            if reset is None:
                reset = parse_delay(response.headers.get(name))
        far_reset = retry_after is None and reset is not None and reset > total_retry_budget
        if _QUOTA_WORDS.search(upstream) or far_reset:
            when = f"; it refreshes in {human_seconds(reset)}" if reset is not None else ""
            quota = QuotaExhaustedError(f"{what}: {provider.quota_words} (429){when}", retry_after=reset)
            return Failure("quota", quota, retry_after=reset)
        limited = RateLimitError(f"{what}: rate limited ({tag})", retry_after=retry_after)
        return Failure("rate_limit", limited, retry_after=retry_after)
    if status >= 500 or status == 408:
        error = ServiceUnavailableError(f"{what}: server error ({tag})", status_code=status)
        return Failure("server", error, retry_after=retry_after)
    if status == 400:
        parsed = parse_context_length_message(upstream)
        if parsed is not None:
            limit, requested = parsed
            context = ContextLengthError(
                f"{what}: the model takes {limit} tokens, the request has {requested} (400)",
                limit=limit,
                requested=requested,
            )
            context.hint = "the input is longer than the model takes; split it or shorten the prompt"
            return context
    if status in (400, 413, 422):
        return BadRequestError(
            f"{what}: the API refused the request ({tag})",
            status_code=status,
            hint="iorag sent a request the API does not accept; please report it with this message",
        )
    if status in (401, 403):
        return AuthenticationError(f"{what}: the API refused the key ({tag})", status_code=status)
    if status == 402:
        return PaymentRequiredError(f"{what}: {model!r} needs a higher tier (402)")
    if status == 404:
        if model is None:
            return ApiError(f"{what}: not found (404)", status_code=404, hint="check IOINTELLIGENCE_BASE_URL")
        return ModelNotFoundError(f"{what}: unknown model {model!r} (404)")
    return ApiError(f"{what}: unexpected status ({tag})", status_code=status)


__all__ = [
    "Secret",
    "error_code",
    "error_for_response",
    "message_from_body",
    "parse_context_length_message",
    "redact",
    "safe_excerpt",
]
