"""A faithful fake of the IO Intelligence API, served by real uvicorn on loopback.

`FakeServer(FakeConfig(...))` is a context manager that serves the Starlette
app on 127.0.0.1 (a free port) in a background thread and yields itself;
`server.base_url` is `http://127.0.0.1:PORT/api/v1`. The config is mutable
while the server runs (`server.config.rate_429 = 0.3`), `server.reset()`
restores a fresh config and empties the log.

What it reproduces (see FakeConfig for the knobs):

- `Authorization: Bearer <key>` required; a wrong key gets 401 in the OpenAI
  error shape, echoing the key (so clients must redact it).
- Every request is received whole (its body read) before anything else,
  latency included, as a real server does: a client that dies while the fake
  makes it wait has still sent its request, which is logged, counted against
  the quota and answered into the void. A client that hangs up before its
  request is complete sent nothing: that is neither logged nor a traceback.
- Faults, decided per call after latency and auth: a scripted list consumed
  first (`script=[429, "429+retry", 503, "drop", "timeout"]`), then random ones
  by rate (429 with or without Retry-After, 503, dropped connection, stall).
- `/embeddings`: body validation (422), per-model forced status (402 premium,
  ...), unknown model 404, quota per model (429 whose message says "quota",
  with `x-ratelimit-reset` seconds; `refresh_quota()` is the refresh), token
  counting with a tokenizer of its own (real WordPiece for mxbai, a
  digit-splitting cl100k stand-in times a ratio for gemma), vLLM's 400 context-length body, deterministic vectors
  (`fake_vector`), base64 or float, optionally shuffled `index` order.
- `/chat/completions`: prompt counting, vLLM 400 over context, deterministic
  answers citing the sources the user message holds (its `[n]` block markers at
  line starts, 1 up to the first gap), `reasoning_content` for ids with
  "R1" or "Thinking", `max_tokens` accepted as the deprecated alias, SSE with
  reasoning deltas, a usage chunk when `stream_options.include_usage`, `[DONE]`.
- `/models`: the OpenAI list shape (`max_model_len` null for some) or the
  newer shape (`context_window`/`max_tokens` at top level or under
  `metadata`), paginated by `next` link, `has_more` cursor or `page` number.

Profiles (`FakeConfig(profile=...)`): "ionet" (the above, under `/api/v1`) or
"iio", the IIO AI Platform (under `/v1`, `iio_config()` builds one): its four
models, a tier (`tier_models`: others get 422 `invalid_model`), error bodies
`{"error": {"code", "message"}}` (401 `auth_required`, 403 `tier_exceeded`
once `monthly_limit` requests were served, 429 `rate_limited` with
Retry-After, 503 `cell_unavailable`), chat that takes `max_tokens` (it refuses
`max_completion_tokens`), and `GET /v1/health`. Rate-limit windows
(`rate_limit` requests per `rate_window` seconds, scaled down in tests) put
`X-RateLimit-Limit/-Remaining/-Reset` on every answer (io.net profile:
the lower-case `x-ratelimit-*-requests` names); a request over the window
gets 429. `echo_key` makes error answers leak the caller's key in a header
and 5xx answers HTML pages with a traceback holding it (clients must never
relay them); faults "500html", "badjson" (a 200 that is not JSON) and
"cutstream" (a chat stream that stops before finishing) test the same.

Every call is logged (`server.log`), with the hash of each embedded text, so
tests and the benchmark can check exactly-once delivery.

Dropped connections: ASGI has no "abort" message, so the app sends a response
start whose header value holds a CR/LF. uvicorn marks the response as started,
h11 refuses to serialise the header and raises, and uvicorn, seeing an
exception after the start, closes the socket with nothing written: the client
gets "server disconnected without sending a response", exactly what a gateway
dropping the connection looks like. (The server runs with `http="h11"` so this
holds; the error uvicorn logs for it is silenced while the fake runs.)
"""

from __future__ import annotations

import asyncio
import base64
import contextvars
import hashlib
import json
import logging
import math
import random
import re
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Any, Iterator, Literal

import numpy as np
import uvicorn
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from indexer.tokens import load_cl100k, load_wordpiece

GEMMA = "BAAI/bge-multilingual-gemma2"
MXBAI = "mixedbread-ai/mxbai-embed-large-v1"
NOMIC = "nomic-embed-text"
QWEN3_EMBED = "qwen3-embedding:8b"
QWEN_7B = "qwen2.5:7b"
QWEN_72B = "qwen2.5:72b"
API_PREFIX = "/api/v1"
IIO_PREFIX = "/v1"
#: Models counted with BERT's uncased WordPiece.
WORDPIECE_MODELS = (MXBAI, NOMIC)


@dataclass(frozen=True)
class FakeModel:
    id: str
    kind: Literal["chat", "embedding"]
    context_length: int
    max_output_tokens: int | None = None
    dims: int | None = None
    #: How /models shows the figures: "top" level, under "metadata", or "null" (unknown).
    advertise: Literal["top", "metadata", "null"] = "top"


DEFAULT_MODELS: tuple[FakeModel, ...] = (
    FakeModel(GEMMA, "embedding", 4_096, dims=3_584, advertise="top"),
    FakeModel(MXBAI, "embedding", 512, dims=1_024, advertise="metadata"),
    # Unknown to the catalog; only its /models record says it embeds.
    FakeModel("acme/vectorizer-v2", "embedding", 8_192, dims=768, advertise="metadata"),
    FakeModel("meta-llama/Llama-3.3-70B-Instruct", "chat", 128_000, 8_192, advertise="top"),
    FakeModel("deepseek-ai/DeepSeek-R1-0528", "chat", 128_000, 32_768, advertise="metadata"),
    FakeModel("Qwen3-235B-A22B-Thinking-2507", "chat", 262_144, advertise="null"),
    FakeModel("openai/gpt-oss-120b", "chat", 131_072, 32_768, advertise="null"),
    FakeModel("acme/Premium-405B", "chat", 131_072, 4_096, advertise="top"),
    FakeModel("acme/Small-Chat-8K", "chat", 8_192, 2_048, advertise="top"),
)

IIO_MODELS: tuple[FakeModel, ...] = (
    FakeModel(NOMIC, "embedding", 8_192, dims=768),
    FakeModel(QWEN3_EMBED, "embedding", 32_768, dims=4_096),
    FakeModel(QWEN_7B, "chat", 32_768, 8_192),
    FakeModel(QWEN_72B, "chat", 32_768, 8_192),
)

#: Status -> the IIO AI Platform's error code.
IIO_CODES = {
    400: "bad_request", 401: "auth_required", 403: "tier_exceeded", 404: "not_found", 422: "invalid_model",
    429: "rate_limited", 500: "internal_error", 503: "cell_unavailable", 504: "gateway_timeout",
}

#: The Authorization header of the request being handled (for `echo_key`).
_PRESENTED: contextvars.ContextVar[str] = contextvars.ContextVar("presented", default="")

Fault = int | str  # 429, "429+retry", 503, "drop", "timeout", "500html", "badjson", "cutstream", 200 (no fault)


@dataclass
class FakeConfig:
    """Knobs; mutate them on `server.config` while the server runs."""

    api_key: str = "test-key"
    seed: int = 0
    #: Seconds added to every call, plus this much per 1,000 tokens handled.
    latency: float = 0.0
    latency_per_1k_tokens: float = 0.0
    #: Faults consumed one per call before the random ones.
    script: list[Fault] = field(default_factory=list)
    #: Share of calls answered 429; `retry_after_share` of them carry Retry-After: `retry_after`.
    rate_429: float = 0.0
    retry_after_share: float = 0.0
    retry_after: float = 1.0
    rate_503: float = 0.0
    rate_drop: float = 0.0
    #: Share of calls that stall `stall` seconds (or until the client hangs up), then 504.
    rate_timeout: float = 0.0
    stall: float = 5.0
    #: Which endpoints the faults hit.
    fault_endpoints: tuple[str, ...] = ("embeddings", "chat", "models")
    #: Model id -> status answered for it (e.g. 402 for a premium model).
    forced_status: dict[str, int] = field(default_factory=lambda: {"acme/Premium-405B": 402})
    #: Model id -> tokens allowed until the quota refreshes `quota_reset` seconds after running out.
    quota: dict[str, int] = field(default_factory=dict)
    quota_reset: float = 28_800.0
    #: Embedding model -> factor on the fake's own count (gemma's stand-in). Above the
    #: client's 1.15 margin, inputs near the limit get the 400 context-length answer.
    embedding_token_ratio: dict[str, float] = field(default_factory=lambda: {GEMMA: 1.1})
    #: Chat model -> factor on the prompt count.
    chat_token_ratio: dict[str, float] = field(default_factory=dict)
    #: "vllm": errors at the top level of the body; "openai": nested under "error".
    error_style: Literal["vllm", "openai"] = "vllm"
    #: Return embedding items in random order (clients must sort by index).
    shuffle_data: bool = False
    #: Answer float lists even when base64 was asked for.
    force_float: bool = False
    models_shape: Literal["openai", "paged"] = "openai"
    #: Records per /models page (0: everything on one page).
    models_page_size: int = 0
    models_pagination: Literal["next", "cursor", "page"] = "next"
    models: dict[str, FakeModel] = field(default_factory=lambda: {m.id: m for m in DEFAULT_MODELS})
    #: A chat whose last message contains KEY is answered with VALUE (e.g. a follow-up's rewrite).
    replies: dict[str, str] = field(default_factory=dict)
    #: "ionet" (IO Intelligence) or "iio" (the IIO AI Platform); see the module docstring.
    profile: Literal["ionet", "iio"] = "ionet"
    #: Requests allowed per window of `rate_window` seconds (None: no window, no headers).
    rate_limit: int | None = None
    rate_window: float = 60.0
    #: Requests served before 403 tier_exceeded (iio); `month_reset` seconds until the reset.
    monthly_limit: int | None = None
    month_reset: float = 86_400.0
    #: Models the key's tier may use (iio; None: all).
    tier_models: frozenset[str] | None = None
    #: Every error answer leaks the caller's Authorization header (a header, the body, HTML pages).
    echo_key: bool = False
    #: Source numbers the chat answer cites, in this order (None: every source in the prompt).
    cite: list[int] | None = None


def iio_config(**changes: Any) -> FakeConfig:
    """A fake IIO AI Platform: its models, the Free tier (10 requests/min, no qwen2.5:72b)."""
    settings: dict[str, Any] = {
        "profile": "iio",
        "models": {m.id: m for m in IIO_MODELS},
        "forced_status": {},
        "embedding_token_ratio": {},
        "rate_limit": 10,
        "tier_models": frozenset({NOMIC, QWEN3_EMBED, QWEN_7B}),
        "api_key": "iio-dev-test-key",
    }
    settings.update(changes)
    return FakeConfig(**settings)


@dataclass(frozen=True)
class RequestRecord:
    """One call the fake answered (or dropped)."""

    endpoint: str
    model: str | None
    status: int | str  # HTTP status, or "drop"
    fault: str = ""
    inputs: tuple[str, ...] = ()
    tokens: tuple[int, ...] = ()
    body_keys: tuple[str, ...] = ()
    encoding_format: str | None = None
    at: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status == 200

    @property
    def hashes(self) -> tuple[str, ...]:
        return tuple(text_hash(t) for t in self.inputs)


class RequestLog:
    """Thread-safe list of RequestRecord."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: list[RequestRecord] = []

    def add(self, record: RequestRecord) -> None:
        with self._lock:
            self._records.append(record)

    def clear(self) -> None:
        with self._lock:
            self._records.clear()

    @property
    def records(self) -> list[RequestRecord]:
        with self._lock:
            return list(self._records)

    def of(self, endpoint: str) -> list[RequestRecord]:
        return [r for r in self.records if r.endpoint == endpoint]

    def ok(self, endpoint: str = "embeddings") -> list[RequestRecord]:
        return [r for r in self.of(endpoint) if r.ok]

    def embedded_counts(self) -> Counter[str]:
        """How many times each text (by hash) came back in a successful /embeddings answer."""
        counts: Counter[str] = Counter()
        for record in self.ok("embeddings"):
            counts.update(record.hashes)
        return counts


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def fake_vector(model: str, text: str, dims: int) -> np.ndarray:
    """The deterministic (not normalized) float32 vector the fake returns for `text`."""
    seed = int.from_bytes(hashlib.sha256(f"{model}\x00{text}".encode("utf-8", "surrogatepass")).digest()[:8], "little")
    return np.random.default_rng(seed).standard_normal(dims).astype(np.float32)


_DIGITS = re.compile(r"\d")


def count_embedding_tokens(model: str, text: str, ratio: float = 1.0) -> int:
    """The fake's own count: WordPiece for mxbai and nomic; else cl100k with each digit a token, times `ratio`, plus BOS/EOS."""
    if model in WORDPIECE_MODELS:
        return len(load_wordpiece().encode(text).ids)
    digits = len(_DIGITS.findall(text))
    base = len(load_cl100k().encode_ordinary(_DIGITS.sub("", text))) + digits
    return math.ceil(base * ratio) + 2


def count_chat_tokens(messages: list[dict[str, Any]], ratio: float = 1.0) -> int:
    text = "".join(str(m.get("content") or "") for m in messages)
    return math.ceil((len(load_cl100k().encode_ordinary(text)) + 4 * len(messages)) * ratio)


async def _peek_model(request: Request) -> str | None:
    """The model named in a JSON body, for the log of a call answered before parsing."""
    try:
        body = json.loads(await request.body() or b"null")
    except ValueError:
        return None
    model = body.get("model") if isinstance(body, dict) else None
    return model if isinstance(model, str) else None


class _DropConnection(Response):
    """Makes uvicorn close the socket without writing a byte (see the module docstring)."""

    def __init__(self) -> None:
        super().__init__(status_code=200)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"x-drop", b"drop\r\nnow")]})


class _Stop(Exception):
    """Ends handling early with a ready response."""

    def __init__(self, response: Response, record: RequestRecord) -> None:
        self.response = response
        self.record = record


class FakeApi:
    """State and handlers of the fake; `app` is the ASGI app."""

    def __init__(self, config: FakeConfig) -> None:
        self.config = config
        self.log = RequestLog()
        self.rng = random.Random(config.seed)
        #: Quota state per model, guarded by `_quota_lock` (tests refresh it from their own thread).
        self.used: Counter[str] = Counter()
        self.exhausted_at: dict[str, float] = {}
        self._quota_lock = threading.RLock()
        #: Bumped by reset(): a call still running from before (a stall) is not logged after it.
        self.generation = 0
        #: Rate window and monthly count (guarded by `_quota_lock`).
        self.window_start = 0.0
        self.window_count = 0
        self.month_count = 0
        self.month_exhausted_at: float | None = None
        #: The X-IIO-Tenant header of every call handled (None where absent).
        self.tenants: list[str | None] = []
        routes = []
        for prefix in (API_PREFIX, IIO_PREFIX):
            routes += [
                Route(f"{prefix}/embeddings", self.embeddings, methods=["POST"]),
                Route(f"{prefix}/chat/completions", self.chat, methods=["POST"]),
                Route(f"{prefix}/models", self.models, methods=["GET"]),
            ]
        routes.append(Route(f"{IIO_PREFIX}/health", self.health, methods=["GET"]))
        self.app = Starlette(routes=routes)

    def reset(self, config: FakeConfig) -> None:
        self.generation += 1
        self.config = config
        self.rng = random.Random(config.seed)
        self.refresh_quota()
        self.refresh_month()
        with self._quota_lock:
            self.window_start, self.window_count = 0.0, 0
        self.tenants.clear()
        self.log.clear()

    def refresh_month(self) -> None:
        """The monthly reset: the request count starts again from zero."""
        with self._quota_lock:
            self.month_count = 0
            self.month_exhausted_at = None

    def refresh_quota(self, model: str | None = None) -> None:
        """What the API's quota refresh does: the tokens used start again from zero.

        For one model, or every model when `model` is None. Happens by itself
        `quota_reset` seconds after a model's quota ran out.
        """
        with self._quota_lock:
            if model is None:
                self.used.clear()
                self.exhausted_at.clear()
            else:
                self.used.pop(model, None)
                self.exhausted_at.pop(model, None)

    # -- shared steps ------------------------------------------------------------

    def error(self, status: int, message: str, kind: str, headers: dict[str, str] | None = None) -> Response:
        presented = _PRESENTED.get()
        if self.config.echo_key:
            headers = {**(headers or {}), "x-debug-authorization": presented}
            if status >= 500:
                page = (
                    f"<html><head><title>{status} Internal Server Error</title></head><body><h1>{message}</h1>"
                    f"<pre>Traceback (most recent call last):\n  File \"gateway.py\", line 88, in forward\n"
                    f"    upstream.send(headers={{'Authorization': '{presented}'}})\nRuntimeError: {message}</pre>"
                    "</body></html>"
                )
                return Response(page, status_code=status, media_type="text/html", headers=headers)
            message = f"{message} (you sent {presented})"
        if self.config.profile == "iio":
            code = IIO_CODES.get(status, "error")
            return JSONResponse({"error": {"code": code, "message": message, "status": status}}, status_code=status,
                                headers=headers)
        if self.config.error_style == "openai":
            body: dict[str, Any] = {"error": {"message": message, "type": kind, "param": None, "code": status}}
        else:
            body = {"object": "error", "message": message, "type": kind, "param": None, "code": status}
        return JSONResponse(body, status_code=status, headers=headers)

    async def prelude(self, request: Request, endpoint: str) -> None:
        """Latency, auth and faults, in that order; raises _Stop to answer early.

        The body has been received already (`handle`)."""
        cfg = self.config
        if cfg.latency:
            await asyncio.sleep(cfg.latency)
        auth = request.headers.get("authorization", "")
        if auth != f"Bearer {cfg.api_key}":
            token = auth.removeprefix("Bearer ").strip()
            response = self.error(401, f"Incorrect API key provided: {token}", "AuthenticationError")
            raise _Stop(response, RequestRecord(endpoint, None, 401, at=time.time()))
        self.count_request(request, endpoint)
        if endpoint not in cfg.fault_endpoints:
            return
        fault = self.pick_fault()
        if fault in ("", "200", 200):
            return
        record = RequestRecord(endpoint, await _peek_model(request), 0, fault=str(fault), at=time.time())
        if fault in (429, "429", "429+retry"):
            headers = {"retry-after": f"{cfg.retry_after:g}"} if fault == "429+retry" else None
            raise _Stop(self.error(429, "Rate limit reached, slow down", "RateLimitError", headers), replace(record, status=429))
        if fault in (503, "503", 500, 502, 504):
            status = int(fault)
            raise _Stop(self.error(status, "Service temporarily unavailable", "ServiceUnavailable"), replace(record, status=status))
        if fault == "500html":
            raise _Stop(self.error(500, "Internal Server Error", "InternalError"), replace(record, status=500))
        if fault == "badjson":
            broken = Response('{"object": "list", "data": [{"embedding": [0.1, ', media_type="application/json")
            raise _Stop(broken, replace(record, status=200, fault="badjson"))
        if fault == "cutstream":
            raise _Stop(StreamingResponse(_cut_stream(), media_type="text/event-stream"), replace(record, status=200))
        if fault == "drop":
            raise _Stop(_DropConnection(), replace(record, status="drop"))
        if fault == "timeout":
            deadline = time.monotonic() + cfg.stall
            while time.monotonic() < deadline and not await request.is_disconnected():
                await asyncio.sleep(0.02)
            raise _Stop(self.error(504, "Gateway timeout", "GatewayTimeout"), replace(record, status=504, fault="timeout"))
        raise AssertionError(f"unknown fault {fault!r}")

    def count_request(self, request: Request, endpoint: str) -> None:
        """The monthly limit (iio: 403 tier_exceeded) and the rate window (429); raises _Stop when over."""
        cfg = self.config
        with self._quota_lock:
            now = time.time()
            if cfg.monthly_limit is not None and self.month_count >= cfg.monthly_limit:
                exhausted = self.month_exhausted_at = self.month_exhausted_at or now
                left = max(0.0, cfg.month_reset - (now - exhausted))
                response = self.error(403, "Monthly request limit reached for your tier; wait for the reset",
                                      "tier_exceeded", {"retry-after": f"{math.ceil(left)}"})
                raise _Stop(response, RequestRecord(endpoint, None, 403, fault="tier_exceeded", at=now))
            if cfg.rate_limit is not None:
                if now - self.window_start >= cfg.rate_window:
                    self.window_start, self.window_count = now, 0
                if self.window_count >= cfg.rate_limit:
                    wait = self.window_start + cfg.rate_window - now
                    response = self.error(429, "Rate limit exceeded", "rate_limited", {"retry-after": f"{wait:.3f}"})
                    raise _Stop(response, RequestRecord(endpoint, None, 429, fault="window", at=now))
                self.window_count += 1
            self.month_count += 1

    def rate_headers(self) -> dict[str, str]:
        """The window's state as the profile's headers (none without a window)."""
        cfg = self.config
        if cfg.rate_limit is None:
            return {}
        with self._quota_lock:
            remaining = max(0, cfg.rate_limit - self.window_count)
            reset = max(0.0, self.window_start + cfg.rate_window - time.time())
        if cfg.profile == "iio":
            names = ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset")
        else:
            names = ("x-ratelimit-limit-requests", "x-ratelimit-remaining-requests", "x-ratelimit-reset-requests")
        return dict(zip(names, (str(cfg.rate_limit), str(remaining), f"{reset:.3f}")))

    async def health(self, request: Request) -> Response:
        """GET /v1/health: the platform's cells and models (a cell is down after a 503, until a success)."""
        served = [r for r in self.log.records if r.endpoint != "health"]
        down = bool(served) and served[-1].status == 503
        self.log.add(RequestRecord("health", None, 200, at=time.time()))
        return JSONResponse({
            "status": "degraded" if down else "ok",
            "cells": [{"id": "cell-1", "status": "down" if down else "up"}],
            "models": sorted(self.config.models),
            "latency_ms": 12,
        })

    def pick_fault(self) -> Fault:
        cfg = self.config
        if cfg.script:
            return cfg.script.pop(0)
        draw = self.rng.random()
        for rate, fault in (
            (cfg.rate_429, "429"),
            (cfg.rate_503, 503),
            (cfg.rate_drop, "drop"),
            (cfg.rate_timeout, "timeout"),
        ):
            if draw < rate:
                if fault == "429" and self.rng.random() < cfg.retry_after_share:
                    return "429+retry"
                return fault
            draw -= rate
        return ""

    def check_model(self, endpoint: str, model: str, kind: str) -> FakeModel:
        tier = self.config.tier_models
        if self.config.profile == "iio" and (model not in self.config.models or (tier is not None and model not in tier)):
            response = self.error(422, f"Model '{model}' is not available on your tier. Use GET /v1/models.",
                                  "invalid_model")
            raise _Stop(response, RequestRecord(endpoint, model, 422, at=time.time()))
        forced = self.config.forced_status.get(model)
        if forced:
            messages = {
                401: "Invalid authentication",
                402: f"The model {model} requires a higher subscription tier",
                403: "Forbidden",
                404: f"The model `{model}` does not exist.",
            }
            response = self.error(forced, messages.get(forced, "Forced error"), "ForcedError")
            raise _Stop(response, RequestRecord(endpoint, model, forced, at=time.time()))
        info = self.config.models.get(model)
        if info is None or info.kind != kind:
            response = self.error(404, f"The model `{model}` does not exist.", "NotFoundError")
            raise _Stop(response, RequestRecord(endpoint, model, 404, at=time.time()))
        return info

    def check_quota(self, endpoint: str, model: str, tokens: int) -> None:
        allowed = self.config.quota.get(model)
        if allowed is None:
            return
        with self._quota_lock:
            since = self.exhausted_at.get(model)
            if since is not None and time.time() - since >= self.config.quota_reset:
                self.refresh_quota(model)
            if self.used[model] + tokens <= allowed:
                self.used[model] += tokens
                return
            exhausted = self.exhausted_at.setdefault(model, time.time())
        left = self.config.quota_reset - (time.time() - exhausted)
        response = self.error(
            429,
            f"Daily token quota exhausted for {model} ({allowed} tokens); access resumes when the quota refreshes",
            "insufficient_quota",
            # Rounded up so a client waiting exactly this long finds the quota refreshed.
            {"x-ratelimit-reset": f"{math.ceil(max(0.0, left) * 100) / 100 + 0.01:.2f}", "x-ratelimit-remaining-tokens": "0"},
        )
        raise _Stop(response, RequestRecord(endpoint, model, 429, fault="quota", at=time.time()))

    async def json_body(self, request: Request, endpoint: str) -> dict[str, Any]:
        try:
            body = json.loads(await request.body())
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise self.invalid(endpoint, None, [], "body", "a JSON object is required")
        return body

    def invalid(self, endpoint: str, model: str | None, keys: list[str], where: str, message: str) -> _Stop:
        """422 in FastAPI's validation shape (iio: 400 bad_request)."""
        if self.config.profile == "iio":
            response = self.error(400, f"{where}: {message}", "bad_request")
            return _Stop(response, RequestRecord(endpoint, model, 400, body_keys=tuple(keys), at=time.time()))
        body = {"detail": [{"type": "value_error", "loc": ["body", where], "msg": message, "input": None}]}
        return _Stop(JSONResponse(body, status_code=422), RequestRecord(endpoint, model, 422, body_keys=tuple(keys), at=time.time()))

    async def handle(self, request: Request, endpoint: str, work: Any) -> Response:
        generation = self.generation
        # The whole request first, before latency, as a server receives it: uvicorn hands
        # the app nothing once the client is gone, not even a body it had buffered, so a
        # body read after the delay would lose the request of a client that died waiting.
        try:
            await request.body()
        except ClientDisconnect:
            # Gone before the request was complete: nothing arrived. The answer goes nowhere
            # (uvicorn drops sends after a disconnect); it only keeps Starlette from logging.
            return Response(status_code=499)
        _PRESENTED.set(request.headers.get("authorization", ""))
        self.tenants.append(request.headers.get("x-iio-tenant"))
        try:
            await self.prelude(request, endpoint)
            response, record = await work(request)
        except _Stop as stop:
            response, record = stop.response, stop.record
        if generation == self.generation:
            self.log.add(record)
        if not isinstance(response, _DropConnection):
            response.headers.update(self.rate_headers())
        return response

    # -- endpoints ----------------------------------------------------------------

    async def embeddings(self, request: Request) -> Response:
        return await self.handle(request, "embeddings", self._embeddings)

    async def _embeddings(self, request: Request) -> tuple[Response, RequestRecord]:
        body = await self.json_body(request, "embeddings")
        keys = sorted(body)
        model, raw = body.get("model"), body.get("input")
        if not isinstance(model, str) or not model:
            raise self.invalid("embeddings", None, keys, "model", "field required (a string)")
        inputs = [raw] if isinstance(raw, str) else raw
        if not isinstance(inputs, list) or not inputs or not all(isinstance(t, str) for t in inputs):
            raise self.invalid("embeddings", model, keys, "input", "a string or a non-empty list of strings")
        encoding = body.get("encoding_format", "float")
        if encoding not in ("float", "base64"):
            raise self.invalid("embeddings", model, keys, "encoding_format", "must be 'float' or 'base64'")
        dimensions = body.get("dimensions")
        if dimensions is not None and (not isinstance(dimensions, int) or isinstance(dimensions, bool) or dimensions < 1):
            raise self.invalid("embeddings", model, keys, "dimensions", "must be a positive integer")
        info = self.check_model("embeddings", model, "embedding")
        ratio = self.config.embedding_token_ratio.get(model, 1.0)
        tokens = [count_embedding_tokens(model, t, ratio) for t in inputs]
        record = RequestRecord(
            "embeddings", model, 200, inputs=tuple(inputs), tokens=tuple(tokens),
            body_keys=tuple(keys), encoding_format=encoding, at=time.time(),
        )
        if dimensions is not None and dimensions != info.dims:
            response = self.error(400, f"Model \"{model}\" does not support matryoshka representation, "
                                  "changing output dimensions will lead to poor results.", "BadRequestError")
            raise _Stop(response, replace(record, status=400))
        worst = max(tokens)
        if worst > info.context_length:
            message = (
                f"This model's maximum context length is {info.context_length} tokens. However, you requested "
                f"{worst} tokens in the input for embedding generation. Please reduce the length of the input."
            )
            raise _Stop(self.error(400, message, "BadRequestError"), replace(record, status=400))
        self.check_quota("embeddings", model, sum(tokens))
        if self.config.latency_per_1k_tokens:
            await asyncio.sleep(self.config.latency_per_1k_tokens * sum(tokens) / 1000)
        dims = info.dims or 8
        items = []
        for index, text in enumerate(inputs):
            vector = fake_vector(model, text, dims)
            if encoding == "base64" and not self.config.force_float:
                embedding: Any = base64.b64encode(vector.astype("<f4").tobytes()).decode("ascii")
            else:
                embedding = [float(x) for x in vector]
            items.append({"object": "embedding", "index": index, "embedding": embedding})
        if self.config.shuffle_data:
            self.rng.shuffle(items)
        payload = {
            "id": f"embd-{self.rng.getrandbits(48):x}",
            "object": "list",
            "created": int(time.time()),
            "model": model,
            "data": items,
            "usage": {"prompt_tokens": sum(tokens), "total_tokens": sum(tokens), "completion_tokens": 0},
        }
        return Response(json.dumps(payload), media_type="application/json"), record

    async def chat(self, request: Request) -> Response:
        return await self.handle(request, "chat", self._chat)

    async def _chat(self, request: Request) -> tuple[Response, RequestRecord]:
        body = await self.json_body(request, "chat")
        keys = sorted(body)
        model, messages = body.get("model"), body.get("messages")
        if not isinstance(model, str) or not model:
            raise self.invalid("chat", None, keys, "model", "field required (a string)")
        if not isinstance(messages, list) or not messages or not all(
            isinstance(m, dict) and isinstance(m.get("role"), str) for m in messages
        ):
            raise self.invalid("chat", model, keys, "messages", "a non-empty list of {role, content}")
        if self.config.profile == "iio" and "max_completion_tokens" in body:
            raise self.invalid("chat", model, keys, "max_completion_tokens", "unknown field; this API takes max_tokens")
        budget = body.get("max_completion_tokens", body.get("max_tokens"))
        if budget is not None and (not isinstance(budget, int) or isinstance(budget, bool) or budget < 1):
            raise self.invalid("chat", model, keys, "max_completion_tokens", "must be a positive integer")
        temperature = body.get("temperature")
        if temperature is not None and (not isinstance(temperature, (int, float)) or isinstance(temperature, bool)):
            raise self.invalid("chat", model, keys, "temperature", "must be a number")
        info = self.check_model("chat", model, "chat")
        prompt = count_chat_tokens(messages, self.config.chat_token_ratio.get(model, 1.0))
        budget = budget or min(256, max(1, info.context_length - prompt))
        said = tuple(f"{m.get('role')}: {m.get('content') or ''}" for m in messages)
        record = RequestRecord("chat", model, 200, inputs=said, tokens=(prompt,), body_keys=tuple(keys), at=time.time())
        if prompt + budget > info.context_length:
            message = (
                f"This model's maximum context length is {info.context_length} tokens. However, you requested "
                f"{prompt + budget} tokens ({prompt} in the messages, {budget} in the completion). "
                "Please reduce the length of the messages or completion."
            )
            raise _Stop(self.error(400, message, "BadRequestError"), replace(record, status=400))
        self.check_quota("chat", model, prompt + budget)
        present = source_numbers(messages)
        # `cite`: answer citing these numbers instead (those the prompt holds), like a model that skips some.
        wanted = self.config.cite
        cited = [n for n in wanted if n in present] if wanted is not None else present
        content, reasoning, finish = _answer(model, cited, budget)
        last = str(messages[-1].get("content") or "")
        for key, reply in self.config.replies.items():
            if key in last:
                content, finish = reply, "stop"
        encode = load_cl100k().encode_ordinary
        usage = {
            "prompt_tokens": prompt,
            "completion_tokens": len(encode(content)) + (len(encode(reasoning)) if reasoning else 0),
        }
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        if body.get("stream"):
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            events = _sse_events(model, content, reasoning, finish, usage if include_usage else None)
            return StreamingResponse(events, media_type="text/event-stream"), record
        message_out: dict[str, Any] = {"role": "assistant", "content": content}
        if reasoning is not None:
            message_out["reasoning_content"] = reasoning
        payload = {
            "id": f"chatcmpl-{self.rng.getrandbits(48):x}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [{"index": 0, "message": message_out, "finish_reason": finish}],
            "usage": usage,
        }
        return JSONResponse(payload), record

    async def models(self, request: Request) -> Response:
        return await self.handle(request, "models", self._models)

    async def _models(self, request: Request) -> tuple[Response, RequestRecord]:
        cfg = self.config
        records = [self._model_record(m) for m in cfg.models.values()]
        size = cfg.models_page_size or len(records) or 1
        params = request.query_params
        if cfg.models_pagination == "cursor" and "after" in params:
            ids = [r["id"] for r in records]
            start = ids.index(params["after"]) + 1 if params["after"] in ids else len(ids)
        else:
            start = (int(params.get("page", "1")) - 1) * size
        page_records = records[start : start + size]
        more = start + size < len(records)
        page = start // size + 1
        payload: dict[str, Any] = {"object": "list", "data": page_records}
        if cfg.models_page_size:
            if cfg.models_pagination == "next":
                payload["next"] = f"{API_PREFIX}/models?page={page + 1}" if more else None
            elif cfg.models_pagination == "cursor":
                payload["has_more"] = more
                payload["first_id"] = page_records[0]["id"] if page_records else None
                payload["last_id"] = page_records[-1]["id"] if page_records else None
            else:
                payload["page"] = page
                payload["total_pages"] = math.ceil(len(records) / size)
        return JSONResponse(payload), RequestRecord("models", None, 200, at=time.time())

    def _model_record(self, m: FakeModel) -> dict[str, Any]:
        known = m.advertise != "null"
        if self.config.models_shape == "openai":
            return {
                "id": m.id, "object": "model", "created": 1_730_000_000, "owned_by": "io-intelligence",
                "root": m.id, "parent": None, "max_model_len": m.context_length if known else None,
                "permission": [{"object": "model_permission", "allow_sampling": True}],
            }
        figures: dict[str, Any] = {"context_window": m.context_length}
        if m.max_output_tokens:
            figures["max_tokens"] = m.max_output_tokens
        if m.kind == "embedding":
            figures.update({"type": "embedding", "dimensions": m.dims})
        record: dict[str, Any] = {"id": m.id, "object": "model", "name": m.id.split("/")[-1], "created": 1_730_000_000}
        if m.advertise == "top":
            record.update(figures)
        elif m.advertise == "metadata":
            record["metadata"] = figures
        return record


#: A source block's marker as iorag writes it: `[n]` opening a line, then a space (header) or the line's end.
_SOURCE_MARKER = re.compile(r"^\[(\d+)\](?= |$)", re.MULTILINE)


def source_numbers(messages: list[dict[str, Any]]) -> list[int]:
    """The numbers of the sources the user messages hold: 1, 2, ... up to the first missing marker.

    Only `[n]` markers at line starts in user messages count: the system
    message's example citations are no sources, and neither is a `[7]` inside a
    source's text when there are fewer than seven.
    """
    found: set[int] = set()
    for message in messages:
        if message.get("role") == "user":
            found.update(int(n) for n in _SOURCE_MARKER.findall(str(message.get("content") or "")))
    count = 0
    while count + 1 in found:
        count += 1
    return list(range(1, count + 1))


def answer_text(cited: list[int]) -> str:
    """The fake's answer citing these sources: "Answer based on [1], [2] and [3]." (before any cut)."""
    if not cited:
        return "I could not find this in the sources."
    refs = [f"[{n}]" for n in cited]
    return "Answer based on " + (refs[0] if len(refs) == 1 else ", ".join(refs[:-1]) + " and " + refs[-1]) + "."


def _answer(model: str, cited: list[int], budget: int) -> tuple[str, str | None, str]:
    """Deterministic answer citing the sources `cited`; cut to `budget` tokens."""
    content = answer_text(cited)
    reasoning = None
    if "R1" in model or "Thinking" in model:
        reasoning = f"The prompt cites {len(cited)} sources; I will answer from them."
    encoding = load_cl100k()
    tokens = encoding.encode_ordinary(content)
    if len(tokens) > budget:
        return encoding.decode(tokens[:budget]), reasoning, "length"
    return content, reasoning, "stop"


async def _sse_events(
    model: str, content: str, reasoning: str | None, finish: str, usage: dict[str, int] | None
) -> Any:
    """Chunks as vLLM streams them: role, reasoning deltas, content deltas, finish, usage, [DONE]."""
    created = int(time.time())

    def chunk(choices: list[dict[str, Any]], **more: Any) -> str:
        body = {"id": "chatcmpl-stream", "object": "chat.completion.chunk", "created": created, "model": model,
                "choices": choices, **more}
        return f"data: {json.dumps(body)}\n\n"

    yield chunk([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}])
    for piece in re.findall(r"\S+\s*", reasoning or ""):
        yield chunk([{"index": 0, "delta": {"reasoning_content": piece}, "finish_reason": None}])
    for piece in re.findall(r"\S+\s*", content):
        await asyncio.sleep(0)
        yield chunk([{"index": 0, "delta": {"content": piece}, "finish_reason": None}])
    yield chunk([{"index": 0, "delta": {}, "finish_reason": finish}])
    if usage is not None:
        yield chunk([], usage=usage)
    yield "data: [DONE]\n\n"


async def _cut_stream() -> Any:
    """A stream that stops after one content delta: no finish_reason, no [DONE]."""
    body = {"id": "chatcmpl-cut", "object": "chat.completion.chunk", "created": int(time.time()), "model": "m",
            "choices": [{"index": 0, "delta": {"content": "Half an ans"}, "finish_reason": None}]}
    yield f"data: {json.dumps(body)}\n\n"


class _QuietDrops(logging.Filter):
    """Hides uvicorn's error record for a deliberately dropped connection."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not (exc is not None and "drop\\r\\nnow" in str(exc))


class FakeServer:
    """Serves a FakeApi with uvicorn on 127.0.0.1 in a background thread.

    Use as a context manager; `base_url` is the API root for ClientConfig.
    """

    def __init__(self, config: FakeConfig | None = None) -> None:
        self.api = FakeApi(config or FakeConfig())
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None
        self._filter = _QuietDrops()
        self.port = 0

    @property
    def config(self) -> FakeConfig:
        return self.api.config

    @property
    def log(self) -> RequestLog:
        return self.api.log

    @property
    def base_url(self) -> str:
        prefix = IIO_PREFIX if self.config.profile == "iio" else API_PREFIX
        return f"http://127.0.0.1:{self.port}{prefix}"

    def refresh_month(self) -> None:
        """The monthly reset, now (iio): requests served start again from zero. The log stays."""
        self.api.refresh_month()

    def reset(self, config: FakeConfig | None = None, **changes: Any) -> FakeConfig:
        """A fresh config (with `changes`), an empty log and quota counters."""
        config = replace(config or FakeConfig(), **changes)
        self.api.reset(config)
        return config

    def refresh_quota(self, model: str | None = None) -> None:
        """The quota refresh, now: tokens used start again from zero (one model, or all). The log stays."""
        self.api.refresh_quota(model)

    def __enter__(self) -> FakeServer:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        self._socket = sock
        config = uvicorn.Config(
            self.api.app, http="h11", ws="none", lifespan="off", log_config=None,
            access_log=False, timeout_graceful_shutdown=2, timeout_keep_alive=30,
        )
        self._server = uvicorn.Server(config)
        logging.getLogger("uvicorn.error").addFilter(self._filter)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]}, daemon=True, name="fakeapi")
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                self.__exit__(None, None, None)
                raise RuntimeError("the fake API did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._socket is not None:
            self._socket.close()
        logging.getLogger("uvicorn.error").removeFilter(self._filter)


def serve(config: FakeConfig | None = None) -> Iterator[FakeServer]:
    """Generator form for pytest fixtures: `yield from serve(FakeConfig(...))`."""
    with FakeServer(config) as server:
        yield server


__all__ = [
    "DEFAULT_MODELS",
    "FakeApi",
    "FakeConfig",
    "FakeModel",
    "FakeServer",
    "GEMMA",
    "IIO_MODELS",
    "NOMIC",
    "QWEN3_EMBED",
    "QWEN_72B",
    "QWEN_7B",
    "MXBAI",
    "RequestLog",
    "RequestRecord",
    "answer_text",
    "count_chat_tokens",
    "count_embedding_tokens",
    "fake_vector",
    "iio_config",
    "serve",
    "source_numbers",
    "text_hash",
]
