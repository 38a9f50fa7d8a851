"""GET and POST /v1/documents, DELETE /v1/documents/{id}: list and change the index over HTTP."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query

from indexer.models import Document

from ...errors import DocumentNotFoundError
from ..deps import ServiceDep
from ..errors import error_responses
from ..schemas import DeleteResponse, DocumentListResponse, DocumentsRequest, DocumentsResponse

router = APIRouter(prefix="/v1/documents", tags=["documents"])


@router.post("", response_model=DocumentsResponse, responses=error_responses(400, 409))
async def add_documents(body: DocumentsRequest, service: ServiceDep) -> Any:
    """Add or replace documents by id; only new or changed chunks are embedded. An id that
    belongs to a document indexed from a file is refused (409) unless `replace` is true."""
    documents = [
        Document(id=d.id, text=d.text, title=d.title, metadata=d.metadata, source="api") for d in body.documents
    ]
    report = await service.aadd_documents(documents, replace_files=body.replace)
    return {
        "added": report.added,
        "updated": report.updated,
        "unchanged": report.unchanged,
        "documents": report.documents,
        "chunks": report.chunks,
        "chunks_embedded": report.chunks_embedded,
        "problems": [f"{p.source}: {p.reason}" for p in report.problems],
    }


@router.get("", response_model=DocumentListResponse)
async def list_documents(
    service: ServiceDep,
    offset: int = Query(0, ge=0, description="Documents to skip."),
    limit: int = Query(50, ge=1, le=1000, description="Documents to return at most."),
) -> Any:
    """The indexed documents with their source, chunk count and metadata (pages, slides, sheets), paged."""
    page, total = await service.alist_documents(offset, limit)
    return {"documents": [vars(d) for d in page], "total": total, "offset": offset, "limit": limit}


@router.delete("/{doc_id:path}", response_model=DeleteResponse, responses=error_responses(404, 409))
async def delete_document(doc_id: str, service: ServiceDep) -> Any:
    """Remove a document from the dense index, the lexical index and the metadata together."""
    report = await service.adelete_documents([doc_id])
    if report.removed == 0:
        raise DocumentNotFoundError(f"no document with id {doc_id!r}")
    return {"deleted": doc_id, "documents": report.documents, "chunks": report.chunks}
