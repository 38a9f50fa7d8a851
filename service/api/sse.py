"""Server-sent events: each item one `data:` line, errors as an `error` event."""

from __future__ import annotations

import json
from typing import Any, AsyncIterator

from fastapi.responses import StreamingResponse

from indexer.errors import IoragError

from .errors import error_json


async def _encode(events: AsyncIterator[dict[str, Any]]) -> AsyncIterator[str]:
    try:
        async for event in events:
            yield f"data: {json.dumps(event, ensure_ascii=False)}\n\n"
    except IoragError as exc:
        # Headers are gone once streaming starts: report the failure in-band.
        yield f"event: error\ndata: {json.dumps(error_json(exc))}\n\n"
    yield "data: [DONE]\n\n"


def sse_response(events: AsyncIterator[dict[str, Any]]) -> StreamingResponse:
    return StreamingResponse(
        _encode(events),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
