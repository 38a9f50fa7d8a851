"""What the client returns: embeddings, chat results and deltas, usage, counters."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np


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
