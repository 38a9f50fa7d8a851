"""HTTP client for the IO Intelligence API: embeddings, chat (plain and streamed), models.

The only package that imports httpx. Its rooms:

    config.py    ClientConfig, DEFAULT_BASE_URL
    client.py    IOIntelligenceClient: one HTTP call per `_send`, policy around it
    retry.py     retry policy (backoff with full jitter, Retry-After, quota waits)
    limiter.py   AdaptiveLimiter (AIMD cap on requests in flight)
    errors.py    HTTP status and body -> ApiError tree; key redaction
    models.py    GET /models records of both shapes, pagination
    wire.py      request bodies, embedding decoding, SSE events
    results.py   EmbeddingResult, ChatResult, ChatDelta, Usage, ClientStats
"""

from .client import IOIntelligenceClient, Sleep
from .config import DEFAULT_BASE_URL, ClientConfig
from .errors import parse_context_length_message
from .limiter import AdaptiveLimiter
from .results import ChatDelta, ChatResult, ClientStats, EmbeddingResult, Usage
from .retry import parse_delay

__all__ = [
    "AdaptiveLimiter",
    "ChatDelta",
    "ChatResult",
    "ClientConfig",
    "ClientStats",
    "DEFAULT_BASE_URL",
    "EmbeddingResult",
    "IOIntelligenceClient",
    "Sleep",
    "Usage",
    "parse_context_length_message",
    "parse_delay",
]
