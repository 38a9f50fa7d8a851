"""Dependencies routes declare: the one RagService the app holds."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from ..rag import RagService


def get_service(request: Request) -> RagService:
    return request.app.state.service  # type: ignore[no-any-return]


ServiceDep = Annotated[RagService, Depends(get_service)]
