"""GET /v1/health and GET /v1/models."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from ...model_list import list_models, openai_model_json
from ..deps import ServiceDep
from ..schemas import ModelsResponse

router = APIRouter(prefix="/v1", tags=["status"])


@router.get("/health")
async def health(service: ServiceDep) -> dict[str, Any]:
    """Index status: documents, chunks, embedding model, snapshot; `upstream`: up, down or off."""
    info = await service.ahealth()
    info["upstream"] = service.upstream_state()
    return info


@router.get("/models", response_model=ModelsResponse)
async def models(service: ServiceDep) -> Any:
    """OpenAI's model list; each item also has context length, output cap, embedding limit and their source."""
    listed, note = await list_models(service.settings)
    return {"object": "list", "data": [openai_model_json(m) for m in listed], "note": note}
