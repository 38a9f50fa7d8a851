"""GET /v1/health and GET /v1/models."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from ..deps import CallerDep, SettingsDep, get_service
from ..schemas import ModelsResponse

router = APIRouter(prefix="/v1", tags=["status"])


@router.get("/health")
async def health(request: Request, caller: CallerDep) -> dict[str, Any]:
    """Index status: documents, chunks, embedding model, snapshot; `upstream`: up, down or off.
    Without a key, on a server that has keys, only the status words (no collection data)."""
    service = await get_service(request) if caller.identified else None
    if service is None:
        settings = request.app.state.settings
        default = request.app.state.collections.opened().get(settings.collection)
        if default is not None:
            upstream = default.upstream_state()
        else:  # nothing asked upstream yet: offline is known from the settings alone
            upstream = "up" if settings.remote else "off"
        return {"status": "ok", "upstream": upstream}
    info = await service.ahealth()
    info["upstream"] = service.upstream_state()
    info["collection"] = caller.collection
    return info


@router.get("/models", response_model=ModelsResponse)
async def models(request: Request, settings: SettingsDep) -> Any:
    """OpenAI's model list; each item also has context length, output cap, embedding limit and their source
    (cached for IORAG_MODELS_TTL seconds)."""
    listed, note = await request.app.state.models_cache.get(settings)
    return {"object": "list", "data": listed, "note": note}
