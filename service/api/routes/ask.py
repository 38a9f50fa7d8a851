"""POST /v1/ask: an answer with sources, plain or streamed."""

from __future__ import annotations

from typing import Any, AsyncIterator

from fastapi import APIRouter

from ...locations import located_answer_json
from ..deps import ServiceDep
from ..errors import error_responses
from ..schemas import AskRequest, AskResponse
from ..spend import checked_completion_tokens, checked_model
from ..sse import sse_response

router = APIRouter(prefix="/v1", tags=["ask"])


@router.post(
    "/ask",
    response_model=AskResponse,
    # `context.budget` is left out of extractive answers rather than sent as null.
    response_model_exclude_none=True,
    responses={200: {"content": {"text/event-stream": {}}}, **error_responses(400, 402, 404, 409, 429, 502, 503)},
)
async def ask(body: AskRequest, service: ServiceDep) -> Any:
    """Retrieve context and answer. With `stream`, server-sent events: `{"delta"}` pieces, then the full answer."""
    options: dict[str, Any] = {
        "history": [turn.model_dump() for turn in body.history],
        "model": checked_model(service.settings, body.model),
        "top_k": body.top_k,
        "max_completion_tokens": checked_completion_tokens(service.settings, body.max_completion_tokens),
    }
    if not body.stream:
        return located_answer_json(await service.aask(body.question, **options))
    # Resolve the model and retrieve before the stream opens, so those errors keep their status code.
    events = service.aask_stream(body.question, **options)
    first = await anext(events)

    async def relay() -> AsyncIterator[dict[str, Any]]:
        event = first
        while True:
            if event.answer is not None:
                yield located_answer_json(event.answer)
            else:
                yield {"delta": event.delta}
            try:
                event = await anext(events)
            except StopAsyncIteration:
                return

    return sse_response(relay())
