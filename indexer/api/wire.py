"""Request bodies and response decoding: chat bodies, embedding vectors, usage, SSE events."""

from __future__ import annotations

import base64
import binascii
import json
import logging
from typing import Any, AsyncIterator, Mapping

import httpx
import numpy as np

from ..errors import ApiError, ContextLengthError, InvalidResponseError, ServiceUnavailableError
from .errors import Secret, error_code, message_from_body, parse_context_length_message, safe_excerpt
from .results import ChatDelta, Usage

log = logging.getLogger("indexer.api")


def chat_body(
    model: str,
    messages: list[dict[str, Any]],
    max_completion_tokens: int,
    temperature: float | None,
    extra: Mapping[str, Any],
    *,
    stream: bool,
    tokens_param: str = "max_completion_tokens",
) -> dict[str, Any]:
    """The /chat/completions body; a stream asks for the usage chunk at its end.

    `tokens_param` is the provider's name for the completion budget
    (`max_completion_tokens`, or `max_tokens` on the IIO AI Platform).
    """
    body: dict[str, Any] = {"model": model, "messages": messages, tokens_param: max_completion_tokens}
    if temperature is not None:
        body["temperature"] = temperature
    body.update(extra)
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return body


def decode_embeddings(payload: Any, expected: int, what: str) -> np.ndarray:
    """(n, dims) float32 rows ordered by each item's `index` (base64 little-endian float32 or lists)."""
    data = payload.get("data") if isinstance(payload, dict) else None
    if not isinstance(data, list) or len(data) != expected:
        got = len(data) if isinstance(data, list) else "no"
        raise InvalidResponseError(f"{what}: expected {expected} embeddings, got {got}")
    rows: list[np.ndarray | None] = [None] * expected
    for position, item in enumerate(data):
        index = item.get("index", position) if isinstance(item, dict) else None
        if not isinstance(index, int) or not 0 <= index < expected or rows[index] is not None:
            raise InvalidResponseError(f"{what}: bad or repeated embedding index {index!r}")
        raw = item.get("embedding")
        try:
            if isinstance(raw, str):
                row = np.frombuffer(base64.b64decode(raw, validate=True), dtype="<f4")
            elif isinstance(raw, list):
                row = np.asarray(raw, dtype=np.float32)
            else:
                raise ValueError("no embedding")
        except (ValueError, binascii.Error) as exc:
            raise InvalidResponseError(f"{what}: unreadable embedding at index {index}") from exc
        rows[index] = row
    dims = {row.shape[0] for row in rows if row is not None}
    if len(dims) != 1:
        raise InvalidResponseError(f"{what}: embeddings of different sizes {sorted(dims)}")
    return np.vstack(rows).astype(np.float32)  # type: ignore[arg-type]


def usage_from(raw: Any) -> Usage:
    """A Usage from a `usage` object; missing or odd figures count as 0."""
    raw = raw if isinstance(raw, dict) else {}
    return Usage(int_or_zero(raw.get("prompt_tokens")), int_or_zero(raw.get("completion_tokens")))


def int_or_zero(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


async def read_events(response: httpx.Response, what: str, secret: Secret) -> AsyncIterator[ChatDelta]:
    """Parse SSE `data:` events into deltas until `[DONE]`.

    A stream is complete at `[DONE]`, or when its body ends after a choice
    gave its `finish_reason`; one that ends before either is an error, never
    a complete answer.

    Raises:
        ServiceUnavailableError: the connection broke midway.
        InvalidResponseError: an unreadable event, or a stream that ended unfinished.
        ContextLengthError, ApiError: the stream carried an error event.
    """
    data: list[str] = []
    finished = False
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
            for delta in deltas_from(event, what, secret):
                finished = finished or delta.finish_reason is not None
                yield delta
        if data:
            if "\n".join(data).strip() == "[DONE]":
                return
            for delta in deltas_from("\n".join(data), what, secret):
                finished = finished or delta.finish_reason is not None
                yield delta
    except httpx.TransportError as exc:
        raise ServiceUnavailableError(f"{what}: the stream was cut ({type(exc).__name__})") from exc
    if not finished:
        raise InvalidResponseError(f"{what}: the stream ended before the answer was finished")


def deltas_from(event: str, what: str, secret: Secret) -> list[ChatDelta]:
    """The deltas in one SSE event: reasoning and answer text apart, then finish and usage."""
    try:
        chunk = json.loads(event)
    except ValueError as exc:
        log.debug("%s: unreadable stream event: %s", what, safe_excerpt(event, secret))
        raise InvalidResponseError(f"{what}: unreadable stream event") from exc
    if not isinstance(chunk, dict):
        return []
    if "error" in chunk:
        upstream = message_from_body(chunk)
        log.debug("%s: error event: %s", what, safe_excerpt(upstream, secret))
        parsed = parse_context_length_message(upstream)
        if parsed:
            raise ContextLengthError(
                f"{what}: the model takes {parsed[0]} tokens, the request has {parsed[1]}",
                limit=parsed[0],
                requested=parsed[1],
            )
        code = error_code(chunk)
        raise ApiError(f"{what}: the API reported an error in the stream" + (f" ({code})" if code else ""))
    deltas: list[ChatDelta] = []
    for choice in chunk.get("choices") or []:
        if not isinstance(choice, dict):
            continue
        delta = choice.get("delta") or {}
        reasoning = delta.get("reasoning_content") or delta.get("reasoning")
        if reasoning:
            deltas.append(ChatDelta(reasoning=reasoning))
        if delta.get("content"):
            deltas.append(ChatDelta(content=delta["content"]))
        if choice.get("finish_reason"):
            deltas.append(ChatDelta(finish_reason=choice["finish_reason"]))
    if chunk.get("usage"):
        deltas.append(ChatDelta(usage=usage_from(chunk["usage"])))
    return deltas


__all__ = ["chat_body", "decode_embeddings", "deltas_from", "int_or_zero", "read_events", "usage_from"]
