"""The web page at `/` and the API docs at `/docs`, both served from installed files.

No page loads anything from another host: the page's own files are in
`static/`, and Swagger UI comes from the `fastapi-offline` package, which
bundles its build. There is no `/redoc`: ReDoc fetches its logo from its
vendor's CDN.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles

STATIC = Path(str(files("service.api") / "static"))
#: Swagger UI's bundle, as the fastapi-offline package ships it.
DOCS_ASSETS = Path(str(files("fastapi_offline") / "static"))


def install(app: FastAPI) -> None:
    """Serve the page, its files and the offline API docs on `app` (built with docs_url=None)."""
    app.mount("/static/docs", StaticFiles(directory=DOCS_ASSETS), name="docs-assets")
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    @app.get("/docs", include_in_schema=False)
    async def swagger(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{app.title} - API docs",
            swagger_js_url=f"{root}/static/docs/swagger-ui-bundle.js",
            swagger_css_url=f"{root}/static/docs/swagger-ui.css",
            swagger_favicon_url=f"{root}/static/favicon.svg",
            # No badge from the online validator: the docs must not call out.
            swagger_ui_parameters={"validatorUrl": None},
        )
