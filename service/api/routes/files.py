"""POST /v1/files: upload files (multipart) and index them with the same readers as `iorag index`."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, File, Form, UploadFile

from ..deps import ServiceDep
from ..errors import error_responses
from ..schemas import FilesResponse

router = APIRouter(prefix="/v1/files", tags=["documents"])


@router.post("", response_model=FilesResponse, responses=error_responses(400, 409))
async def upload_files(
    service: ServiceDep,
    files: Annotated[list[UploadFile], File(description="One or more files (parts named `files`).")],
    replace: Annotated[
        bool, Form(description="Replace documents `iorag index` read from disk under the same ids (409 otherwise).")
    ] = False,
) -> Any:
    """Index uploaded files; each file's name is its document id, so uploading it again replaces it."""
    contents = [(upload.filename or "", await upload.read()) for upload in files]
    report, ids, problems = await service.aindex_files(contents, replace_files=replace)
    return {
        "documents": ids,
        "added": report.added if report else 0,
        "updated": report.updated if report else 0,
        "unchanged": report.unchanged if report else 0,
        "chunks": sum(report.document_chunks.get(i, 0) for i in ids) if report else 0,
        "problems": [{"source": p.source, "reason": p.reason} for p in problems],
    }
