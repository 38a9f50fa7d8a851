"""POST /v1/embeddings: OpenAI's embeddings endpoint, served by the index's embedding model."""

from __future__ import annotations

import base64
from typing import Any

from fastapi import APIRouter

from ...errors import ModelNotServedError, QueryError
from ..deps import ServiceDep
from ..schemas import EmbeddingsRequest

router = APIRouter(prefix="/v1", tags=["openai"])


@router.post("/embeddings")
async def embeddings(body: EmbeddingsRequest, service: ServiceDep) -> Any:
    """Embed strings as documents (no query template), each within the model's token limit."""
    texts = [body.input] if isinstance(body.input, str) else body.input
    if any(not isinstance(text, str) for text in texts):
        raise QueryError("input as token ids is not supported: send text", hint="pass a string or a list of strings")
    embedder = (await service.retriever()).embedder
    served = embedder.model.id
    if body.model not in (None, "", served):
        raise ModelNotServedError(
            f"this server embeds with {served}, the index's model, not {body.model}",
            hint=f"send model={served!r}",
        )
    dims = embedder.model.dims
    if body.dimensions is not None and body.dimensions != dims:
        raise QueryError(f"{served} returns {dims} dimensions, not {body.dimensions}", hint="leave dimensions out")
    result = await service.aembed(texts)  # type: ignore[arg-type]
    data = []
    for position, vector in enumerate(result.vectors):
        if body.encoding_format == "base64":
            encoded: Any = base64.b64encode(vector.astype("<f4").tobytes()).decode("ascii")
        else:
            encoded = [float(x) for x in vector]
        data.append({"object": "embedding", "index": position, "embedding": encoded})
    usage = {"prompt_tokens": result.tokens, "total_tokens": result.tokens}
    return {"object": "list", "data": data, "model": result.model, "usage": usage}
