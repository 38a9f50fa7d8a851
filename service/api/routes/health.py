"""GET /v1/health and GET /v1/models."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from ...model_list import list_models, model_json
from ..deps import ServiceDep
from ..schemas import ModelsResponse

router = APIRouter(prefix="/v1", tags=["status"])


@router.get("/health")
async def health(service: ServiceDep) -> dict[str, Any]:
    """Index status: documents, chunks, embedding model, snapshot."""
    return await service.ahealth()


@router.get("/models", response_model=ModelsResponse)
async def models(service: ServiceDep) -> Any:
    """Models with context length, output cap and embedding limit, and where each figure came from."""
    listed, note = await list_models(service.settings)
    return {"models": [model_json(m) for m in listed], "note": note}
