"""HTTP client for the upstream APIs (IO Intelligence, the IIO AI Platform): embeddings, chat, models.

The only package that imports httpx. Its rooms:

    config.py    ClientConfig (the one upstream config, built from Settings), DEFAULT_BASE_URL
    providers/   one profile per upstream: parameter names, error codes, health, tenant header, models
    pacing.py    RateWindow (waits for the rate-limit window the headers describe)
    breaker.py   CircuitBreaker (stops waiting on an upstream that is down)
    client.py    IOIntelligenceClient: one HTTP call per `_send`, policy around it
    retry.py     retry policy (backoff with full jitter, Retry-After, quota waits)
    limiter.py   AdaptiveLimiter (AIMD cap on requests in flight)
    errors.py    HTTP status and body -> ApiError tree; key redaction
    models.py    GET /models records of both shapes, pagination
    wire.py      request bodies, embedding decoding, SSE events
    results.py   EmbeddingResult, ChatResult, ChatDelta, Usage, ClientStats
"""

from .breaker import CircuitBreaker
from .client import IOIntelligenceClient, Sleep
from .config import DEFAULT_BASE_URL, ClientConfig
from .errors import parse_context_length_message
from .limiter import AdaptiveLimiter
from .pacing import RateWindow
from .providers import PROVIDERS, Provider, provider_for
from .results import ChatDelta, ChatResult, ClientStats, EmbeddingResult, Usage
from .retry import parse_delay

__all__ = [
    "AdaptiveLimiter",
    "ChatDelta",
    "ChatResult",
    "CircuitBreaker",
    "ClientConfig",
    "ClientStats",
    "DEFAULT_BASE_URL",
    "EmbeddingResult",
    "IOIntelligenceClient",
    "PROVIDERS",
    "Provider",
    "RateWindow",
    "Sleep",
    "Usage",
    "parse_context_length_message",
    "parse_delay",
    "provider_for",
]
