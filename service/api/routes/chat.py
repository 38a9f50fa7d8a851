"""POST /v1/chat/completions: OpenAI-compatible, answered with retrieval.

The last user message is the question and the user and assistant messages
before it are the conversation (system and tool messages are not used: iorag
gives its own instructions). The reply is the RAG answer, with the sources in
an extra `sources` field that OpenAI clients ignore.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, AsyncIterator

from fastapi import APIRouter

from ...answer import Answer
from ...locations import located_hit_json
from ...errors import QueryError
from ..deps import ServiceDep
from ..errors import error_responses
from ..schemas import ChatCompletionRequest, ChatMessage
from ..spend import checked_completion_tokens, checked_model
from ..sse import sse_response

router = APIRouter(prefix="/v1", tags=["openai"])


def _text(message: ChatMessage) -> str:
    if isinstance(message.content, str):
        return message.content
    if isinstance(message.content, list):
        return " ".join(str(p.get("text", "")) for p in message.content if p.get("type") == "text")
    return ""


def _conversation(body: ChatCompletionRequest) -> tuple[str, list[dict[str, str]]]:
    """The last user message, and the user and assistant turns before it."""
    for last in range(len(body.messages) - 1, -1, -1):
        if body.messages[last].role == "user":
            history = [
                {"role": m.role, "content": _text(m)} for m in body.messages[:last] if m.role in ("user", "assistant")
            ]
            return _text(body.messages[last]), history
    raise QueryError("no user message to answer")


def _usage(answer: Answer) -> dict[str, int]:
    prompt, completion = answer.usage.prompt_tokens, answer.usage.completion_tokens
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


@router.post(
    "/chat/completions",
    responses={200: {"content": {"text/event-stream": {}}}, **error_responses(400, 402, 404, 409, 429, 502, 503)},
)
async def chat_completions(body: ChatCompletionRequest, service: ServiceDep) -> Any:
    """Answer the last user message from the index (set `stream` for server-sent chunks)."""
    question, history = _conversation(body)
    model = checked_model(service.settings, None if body.model in (None, "", "iorag") else body.model)
    options: dict[str, Any] = {
        "history": history,
        "model": model,
        "top_k": body.top_k,
        "max_completion_tokens": checked_completion_tokens(
            service.settings, body.max_completion_tokens or body.max_tokens
        ),
    }
    completion_id = f"chatcmpl-{uuid.uuid4().hex[:24]}"
    created = int(time.time())
    if not body.stream:
        answer = await service.aask(question, **options)
        return {
            "id": completion_id,
            "object": "chat.completion",
            "created": created,
            "model": answer.model,
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": answer.answer}, "finish_reason": "stop"}
            ],
            "usage": _usage(answer),
            "sources": [located_hit_json(hit) for hit in answer.sources],
        }

    events = service.aask_stream(question, **options)
    first = await anext(events)

    def chunk(delta: dict[str, Any], model_id: str, finish: str | None = None) -> dict[str, Any]:
        return {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model_id,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }

    async def relay() -> AsyncIterator[dict[str, Any]]:
        model_id = model or service.settings.resolved_chat_model()
        yield chunk({"role": "assistant"}, model_id)
        event = first
        while True:
            if event.answer is not None:
                final = chunk({}, event.answer.model, "stop")
                final["usage"] = _usage(event.answer)
                final["sources"] = [located_hit_json(hit) for hit in event.answer.sources]
                yield final
            elif event.delta:
                yield chunk({"content": event.delta}, model_id)
            try:
                event = await anext(events)
            except StopAsyncIteration:
                return

    return sse_response(relay())
