"""GET/POST /v1/collections and DELETE /v1/collections/{name}: isolated indexes on one server."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request

from ... import collections as store
from ..deps import CallerDep
from ..errors import error_responses
from ..schemas import CollectionCreate, CollectionOut, CollectionsResponse

router = APIRouter(prefix="/v1/collections", tags=["collections"])


def _json(info: store.CollectionInfo) -> dict[str, Any]:
    return {"name": info.name, "documents": info.documents, "chunks": info.chunks, "embedding_model": info.embedding_model}


@router.get("", response_model=CollectionsResponse)
async def list_collections(request: Request, caller: CallerDep) -> Any:
    """The collections the caller's key may use, with their sizes."""
    root = request.app.state.collections.root
    names = [n for n in await asyncio.to_thread(store.collection_names, root) if caller.may_see(n)]
    infos = [await asyncio.to_thread(store.describe, root, name) for name in names]
    return {"collections": [_json(i) for i in infos]}


@router.post("", response_model=CollectionOut, status_code=201, responses=error_responses(400, 409))
async def create_collection(body: CollectionCreate, request: Request) -> Any:
    """Create an empty collection; index into it with X-Collection (or `iorag index --collection`)."""
    root = request.app.state.collections.root
    await asyncio.to_thread(store.create, root, body.name)
    return _json(store.CollectionInfo(body.name, 0, 0, None))


@router.delete("/{name}", responses=error_responses(400, 404, 409))
async def delete_collection(name: str, request: Request) -> dict[str, str]:
    """Delete a collection and its whole index (not `default`)."""
    opened = request.app.state.collections
    store.check_name(name)
    if name == store.DEFAULT_COLLECTION or not store.exists(opened.root, name):
        await asyncio.to_thread(store.delete, opened.root, name)  # raises the right error
    await opened.drop(name)
    await asyncio.to_thread(store.delete, opened.root, name, opened.settings.milvus_secret())
    return {"deleted": name}
