"""POST /v1/search: ranked chunks for a query."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from ...locations import located_hit_json
from ..deps import ServiceDep
from ..errors import error_responses
from ..schemas import SearchRequest, SearchResponse

router = APIRouter(prefix="/v1", tags=["search"])


@router.post("/search", response_model=SearchResponse, responses=error_responses(400, 404, 409, 429, 502, 503))
async def search(body: SearchRequest, service: ServiceDep) -> Any:
    hits = await service.asearch(body.query, body.top_k, body.mode)
    return {"results": [located_hit_json(hit) for hit in hits]}
