"""The OpenAPI spec, completed from the access table: security, X-Collection and the statuses
the middlewares may answer on each route (so clients and fuzzers see every documented status)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from .access import OPEN, rule_for
from .errors import DESCRIPTIONS
from .schemas import ErrorResponse

ERROR_REF = {"$ref": "#/components/schemas/ErrorResponse"}
RATE_HEADERS = {
    "X-RateLimit-Limit": {"description": "Requests allowed per minute to this key.", "schema": {"type": "integer"}},
    "X-RateLimit-Remaining": {"description": "Requests left in the current window.", "schema": {"type": "integer"}},
    "X-RateLimit-Reset": {"description": "Seconds until the window frees a request.", "schema": {"type": "integer"}},
}
COLLECTION_HEADER = {
    "name": "X-Collection",
    "in": "header",
    "required": False,
    "description": "The collection (isolated index) to use; default `default`, or the key's own collection.",
    "schema": {"type": "string", "pattern": "^[a-z0-9][a-z0-9_-]{0,62}$"},
}


def _error(code: int) -> dict[str, Any]:
    response: dict[str, Any] = {"description": DESCRIPTIONS[code], "content": {"application/json": {"schema": ERROR_REF}}}
    if code in (429, 503) or code == 409:
        response["headers"] = {"Retry-After": {"description": "Seconds to wait.", "schema": {"type": "integer"}}}
    if code == 401:
        response["headers"] = {"WWW-Authenticate": {"description": "`Bearer`", "schema": {"type": "string"}}}
    return response


def complete(spec: dict[str, Any]) -> dict[str, Any]:
    """Add the access rules to a generated spec (in place) and return it."""
    components = spec.setdefault("components", {})
    components.setdefault("securitySchemes", {})["bearer"] = {
        "type": "http", "scheme": "bearer", "description": "A key from `iorag keys add`; not needed on a server with no keys.",
    }
    components.setdefault("schemas", {})["ErrorResponse"] = ErrorResponse.model_json_schema(
        ref_template="#/components/schemas/{model}"
    )
    for defs_name, schema in ErrorResponse.model_json_schema(ref_template="#/components/schemas/{model}").get("$defs", {}).items():
        components["schemas"].setdefault(defs_name, schema)
    components["schemas"]["ErrorResponse"].pop("$defs", None)
    for path, operations in spec.get("paths", {}).items():
        for method, operation in operations.items():
            rule = rule_for(method.upper(), path)
            if rule is None:
                continue
            responses = operation.setdefault("responses", {})
            codes = [429, 503]
            if rule.need != OPEN:
                operation["security"] = [{"bearer": []}]
                codes += [401, 403]
            else:
                operation["security"] = [{}, {"bearer": []}]
            if rule.collection:
                operation.setdefault("parameters", []).append(dict(COLLECTION_HEADER))
                codes += [400, 404, 403]
            if method in ("post", "put", "patch"):
                codes += [413]
            if "422" in responses:
                # FastAPI documents its own shape; ours is the error shape.
                responses["422"] = _error(422)
            for code in codes:
                responses.setdefault(str(code), _error(code))
            for key, response in responses.items():
                if key.startswith("2"):
                    response.setdefault("headers", {}).update(RATE_HEADERS)
    return spec


def install(app: FastAPI) -> None:
    """Make `app.openapi()` return the completed spec (built once)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            spec = get_openapi(
                title=app.title, version=app.version, summary=app.summary, routes=app.routes,
                description=app.description,
            )
            app.openapi_schema = complete(spec)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
