"""The FastAPI app: one RagService per opened collection, access rules, limits, metrics, one error table."""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import AsyncIterator, Callable

from fastapi import FastAPI

from ..collections import DEFAULT_COLLECTION, OpenCollections
from ..config import Settings
from ..keys import KeyStore
from ..model_list import ModelListCache
from ..rag import RagService
from . import errors, openapi, web
from .access import AccessMiddleware, RateLimiter
from .limits import BodyLimitMiddleware, ConcurrencyMiddleware
from .observability import Metrics, ObservabilityMiddleware
from .routes import ask, chat, collections, documents, embeddings, files, health, metrics, search


def create_app(
    settings: Settings | None = None,
    *,
    service: RagService | None = None,
    service_factory: Callable[[Settings], RagService] | None = None,
) -> FastAPI:
    """Build the app. Run it with `iorag serve` or `uvicorn --factory service.api:create_app`.

    Args:
        service: the service of the server's default collection (built from settings otherwise).
        service_factory: builds the service of each collection opened (default: `RagService(settings)`).
    """
    settings = settings or (service.settings if service is not None else Settings())
    app_metrics = Metrics()

    def observed(factory_settings: Settings) -> RagService:
        built = service_factory(factory_settings) if service_factory else RagService(factory_settings)
        built.on_upstream = app_metrics.upstream
        return built

    opened = OpenCollections(settings, observed)
    app_metrics.watch(opened)
    if service is not None:
        service.on_upstream = app_metrics.upstream
        opened.put(settings.collection if settings.collection else DEFAULT_COLLECTION, service)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await opened.aclose()

    app = FastAPI(
        title="iorag",
        summary="Retrieval-augmented answers with sources, over IO Intelligence or offline.",
        version="0.1.0",
        lifespan=lifespan,
        # Served by `web` from installed files, so that they work offline.
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.collections = opened
    app.state.metrics = app_metrics
    app.state.keys = KeyStore(settings.keys_path)
    app.state.models_cache = ModelListCache(settings.models_ttl)
    errors.register(app)
    for module in (ask, search, documents, files, health, chat, embeddings, collections, metrics):
        app.include_router(module.router)
    web.install(app)
    # Added innermost first: a request meets them as observability -> concurrency -> access -> body size.
    app.add_middleware(BodyLimitMiddleware, max_body=settings.max_body_bytes, max_upload=settings.max_upload_bytes)
    app.add_middleware(
        AccessMiddleware, settings=settings, keys=app.state.keys, limiter=RateLimiter(settings.rate_limit)
    )
    app.add_middleware(ConcurrencyMiddleware, limit=settings.max_concurrency)
    app.add_middleware(ObservabilityMiddleware, metrics=app_metrics, templates=lambda: app.openapi()["paths"])
    openapi.install(app)
    return app
