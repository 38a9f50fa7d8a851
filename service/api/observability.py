"""Request ids, access logs (text or JSON) and Prometheus metrics.

Every response carries `X-Request-ID` (the caller's, when it is sane, else a new
one) and every log line written while serving it names it. Metrics live in a
registry of the app's own (no global state), exposed by `GET /metrics`.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import time
import uuid
from typing import Any, Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..collections import collection_names, describe
from ..collections import OpenCollections

REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("iorag_request_id", default="-")
#: A caller's request id is kept when it looks like an id; anything else is replaced.
SANE_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")

access_log = logging.getLogger("iorag.access")


class RequestIdFilter(logging.Filter):
    """Adds `request_id` to every record (`-` outside a request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = REQUEST_ID.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request id, and any extra fields."""

    EXTRA = ("method", "path", "route", "status", "duration_ms", "collection", "key")

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", REQUEST_ID.get()),
        }
        for name in self.EXTRA:
            if hasattr(record, name):
                entry[name] = getattr(record, name)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def logging_config(log_format: str, level: str = "INFO") -> dict[str, Any]:
    """A `logging.config.dictConfig` for the server (uvicorn's loggers included)."""
    formatter: dict[str, Any] = (
        {"()": JsonFormatter}
        if log_format == "json"
        else {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"}
    )
    handler = {"class": "logging.StreamHandler", "formatter": "default", "filters": ["request_id"],
               "stream": "ext://sys.stderr"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_id": {"()": RequestIdFilter}},
        "formatters": {"default": formatter},
        "handlers": {"default": handler},
        "loggers": {
            "iorag": {"handlers": ["default"], "level": level, "propagate": False},
            "uvicorn": {"handlers": ["default"], "level": level, "propagate": False},
            "uvicorn.error": {"level": level},
            # Our own access line (with the request id) replaces uvicorn's.
            "uvicorn.access": {"handlers": [], "level": "WARNING", "propagate": False},
        },
    }


class Metrics:
    """The app's Prometheus registry and the series iorag records."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "iorag_http_requests", "HTTP requests served, by route template and status.",
            ["method", "route", "status"], registry=self.registry,
        )
        self.latency = Histogram(
            "iorag_http_request_duration_seconds", "Time to the end of the response, by route template.",
            ["method", "route"], registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
        )
        self.upstream_requests = Counter(
            "iorag_upstream_requests", "Chat answers asked of the API, by model and outcome.",
            ["model", "outcome"], registry=self.registry,
        )
        self.upstream_tokens = Counter(
            "iorag_upstream_tokens", "Tokens the API billed for chat answers, by model and kind.",
            ["model", "kind"], registry=self.registry,
        )
        self.upstream_errors = Counter(
            "iorag_upstream_errors", "Failed chat calls to the API, by model and error type.",
            ["model", "error"], registry=self.registry,
        )

    def watch(self, collections: OpenCollections) -> None:
        """Report these collections' sizes and cache hits at every scrape."""
        self.registry.register(_IndexCollector(collections))

    def upstream(self, model: str, error: str | None, prompt_tokens: int, completion_tokens: int) -> None:
        """Record one chat call to the API (RagService's `on_upstream` hook)."""
        self.upstream_requests.labels(model, "error" if error else "ok").inc()
        if error:
            self.upstream_errors.labels(model, error).inc()
        if prompt_tokens:
            self.upstream_tokens.labels(model, "prompt").inc(prompt_tokens)
        if completion_tokens:
            self.upstream_tokens.labels(model, "completion").inc(completion_tokens)


class _IndexCollector(Collector):
    """Read at scrape time: chunks and documents per collection, query-vector cache hits."""

    def __init__(self, collections: OpenCollections) -> None:
        self.collections = collections

    def collect(self) -> Iterator[Any]:
        chunks = GaugeMetricFamily("iorag_collection_chunks", "Chunks in the published index.", labels=["collection"])
        documents = GaugeMetricFamily("iorag_collection_documents", "Documents in the published index.",
                                      labels=["collection"])
        for name in collection_names(self.collections.root):
            try:
                info = describe(self.collections.root, name)
            except Exception:  # a damaged collection must not break the scrape
                continue
            chunks.add_metric([name], info.chunks)
            documents.add_metric([name], info.documents)
        hits = CounterMetricFamily("iorag_query_cache_hits", "Queries served without embedding them (their vector "
                                   "or their results were cached).", labels=["collection"])
        misses = CounterMetricFamily("iorag_query_cache_misses", "Query vectors embedded (not cached).",
                                     labels=["collection"])
        for name, service in self.collections.opened().items():
            stats = service.cache_stats()
            hits.add_metric([name], stats["hits"])
            misses.add_metric([name], stats["misses"])
        yield from (chunks, documents, hits, misses)

    def describe(self) -> Iterable[Any]:
        return []


def route_template(scope: Scope, templates: Iterable[str]) -> str:
    """The route's path template (a bounded label value), or `unmatched`.

    Routed requests carry their route in the scope; requests refused before
    routing (401, 413, 429...) are matched against the documented templates.
    """
    route = scope.get("route")
    if route is not None and hasattr(route, "path"):
        return str(route.path)
    path = scope["path"]
    for template in templates:
        if template == path or re.fullmatch(re.sub(r"\\\{[^}]+\\\}", ".+", re.escape(template)), path):
            return template
    return "unmatched"


class ObservabilityMiddleware:
    """Outermost: request id in, `X-Request-ID` out, one access log line and the HTTP metrics."""

    def __init__(self, app: ASGIApp, *, metrics: Metrics, templates: Callable[[], Iterable[str]]) -> None:
        self.app = app
        self.metrics = metrics
        self.templates = templates

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = next((v.decode("latin-1") for k, v in scope.get("headers", ()) if k == b"x-request-id"), "")
        request_id = given if SANE_ID.fullmatch(given) else uuid.uuid4().hex
        token = REQUEST_ID.set(request_id)
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = list(message.get("headers", [])) + [(b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            route = route_template(scope, self.templates())
            self.metrics.requests.labels(scope["method"], route, str(status)).inc()
            self.metrics.latency.labels(scope["method"], route).observe(elapsed)
            caller = scope.get("state", {}).get("caller")
            access_log.info(
                "%s %s %s %.1fms", scope["method"], scope["path"], status, elapsed * 1000,
                extra={"method": scope["method"], "path": scope["path"], "route": route, "status": status,
                       "duration_ms": round(elapsed * 1000, 1),
                       "collection": getattr(caller, "collection", None),
                       "key": getattr(getattr(caller, "key", None), "name", None)},
            )
            REQUEST_ID.reset(token)
