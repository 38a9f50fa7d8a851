"""The FastAPI app: one RagService built in the lifespan, routers, one error table."""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import AsyncIterator

from fastapi import FastAPI

from ..config import Settings
from ..rag import RagService
from . import errors, web
from .routes import ask, chat, documents, embeddings, files, health, search


def create_app(settings: Settings | None = None, *, service: RagService | None = None) -> FastAPI:
    """Build the app. Run it with `iorag serve` or `uvicorn --factory service.api:create_app`."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.service = service or RagService(settings or Settings())
        try:
            yield
        finally:
            await app.state.service.aclose()

    app = FastAPI(
        title="iorag",
        summary="Retrieval-augmented answers with sources, over IO Intelligence or offline.",
        version="0.1.0",
        lifespan=lifespan,
        # Served by `web` from installed files, so that they work offline.
        docs_url=None,
        redoc_url=None,
    )
    errors.register(app)
    for module in (ask, search, documents, files, health, chat, embeddings):
        app.include_router(module.router)
    web.install(app)
    return app
