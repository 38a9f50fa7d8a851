"""Dependencies routes declare: the caller, the service of the caller's collection, the settings."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from ..collections import OpenCollections
from ..config import Settings
from ..rag import RagService
from .access import Caller, caller_of


def get_caller(request: Request) -> Caller:
    return caller_of(request.state)


async def get_service(request: Request) -> RagService:
    """The service of the collection the caller chose (X-Collection), opened on first use."""
    collections: OpenCollections = request.app.state.collections
    return await collections.get(get_caller(request).collection)


def get_settings(request: Request) -> Settings:
    return request.app.state.settings  # type: ignore[no-any-return]


CallerDep = Annotated[Caller, Depends(get_caller)]
ServiceDep = Annotated[RagService, Depends(get_service)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
