"""The one table from errors to HTTP status, and the JSON error shape.

Every error body is `{"error": {"type", "message", "hint"?, "code"}}`: `type`
is iorag's error class and `code` a short machine-readable reason in the
style of OpenAI's `error.code`, so OpenAI SDKs read our errors as theirs.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from indexer import errors as e

from ..errors import (
    BudgetError,
    CollectionExistsError,
    CollectionNotFoundError,
    DocumentConflictError,
    DocumentNotFoundError,
    ForbiddenError,
    ModelNotServedError,
    OverloadedError,
    PayloadTooLargeError,
    QueryError,
    RateLimitedError,
    UnauthorizedError,
)

log = logging.getLogger("iorag.api")

#: Most specific class first: the first match wins.
STATUS: tuple[tuple[type[e.IoragError], int], ...] = (
    # Access: refused before any work.
    (UnauthorizedError, 401),
    (ForbiddenError, 403),
    (PayloadTooLargeError, 413),
    (RateLimitedError, 429),
    (OverloadedError, 503),
    (CollectionNotFoundError, 404),
    (CollectionExistsError, 409),
    (DocumentConflictError, 409),
    (QueryError, 400),
    (DocumentNotFoundError, 404),
    (BudgetError, 400),
    (e.ConfigError, 400),
    (e.SourceError, 400),
    (e.ChunkingError, 400),
    (e.IndexNotFoundError, 404),
    (e.DimensionMismatchError, 409),
    (e.IndexLockedError, 409),
    (e.PaymentRequiredError, 402),
    (e.ModelNotFoundError, 404),
    (e.QuotaExhaustedError, 429),
    (e.RateLimitError, 429),
    # Upstream refused our key or our request: the fault is between us and the API.
    (e.AuthenticationError, 502),
    (e.BadRequestError, 502),
    (e.InvalidResponseError, 502),
    (e.ServiceUnavailableError, 503),
    (e.StoreError, 500),
)


#: `error.code` by status, as OpenAI's API words it where it has a word for it.
CODE_BY_STATUS: dict[int, str] = {
    400: "invalid_request",
    401: "invalid_api_key",
    402: "payment_required",
    403: "permission_denied",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "request_too_large",
    422: "invalid_request",
    429: "rate_limit_exceeded",
    500: "server_error",
    502: "upstream_error",
    503: "service_unavailable",
}

#: Classes with a more specific code than their status gives; first match wins.
CODE_BY_CLASS: tuple[tuple[type[e.IoragError], str], ...] = (
    (ModelNotServedError, "model_not_found"),
    (BudgetError, "context_length_exceeded"),
    (e.ContextLengthError, "context_length_exceeded"),
    (e.ModelNotFoundError, "model_not_found"),
    (e.QuotaExhaustedError, "insufficient_quota"),
    (DocumentNotFoundError, "document_not_found"),
    (e.IndexNotFoundError, "index_not_found"),
    (e.IndexLockedError, "index_locked"),
    (e.DimensionMismatchError, "embedding_model_mismatch"),
)


def code_for(exc: e.IoragError, status: int) -> str:
    for cls, code in CODE_BY_CLASS:
        if isinstance(exc, cls):
            return code
    return CODE_BY_STATUS.get(status, "error")


def error_json(exc: e.IoragError) -> dict[str, object]:
    """The error body for `exc` (also sent in-band by streams, after the status is gone)."""
    return error_body(type(exc).__name__, str(exc), exc.hint, code=code_for(exc, status_for(exc)))


def status_for(exc: e.IoragError) -> int:
    for cls, status in STATUS:
        if isinstance(exc, cls):
            return status
    return 500


DESCRIPTIONS = {
    400: "bad request: a question, model, collection name or setting that cannot be served",
    401: "no API key, or one the server does not know",
    402: "the chat model needs a higher tier on the API account",
    403: "the key lacks the scope or the collection",
    404: "not found: document, collection, or no index yet",
    409: "conflict: the index is being written (Retry-After), or a document or collection exists",
    413: "request body over the size cap",
    422: "invalid body or parameters",
    429: "rate limit (ours: X-RateLimit-*, or the API's) or exhausted quota; Retry-After says when",
    500: "internal error",
    502: "the API refused our request or key",
    503: "busy (concurrency cap) or the API is unavailable; Retry-After says when",
}


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for these statuses, all with the error schema."""
    from .schemas import ErrorResponse

    return {code: {"model": ErrorResponse, "description": DESCRIPTIONS[code]} for code in codes}


def error_body(kind: str, message: str, hint: str = "", *, code: str = "error", **extra: object) -> dict[str, object]:
    body: dict[str, object] = {"type": kind, "message": message}
    if hint:
        body["hint"] = hint
    body["code"] = code
    body.update(extra)
    return {"error": body}


#: Seconds to suggest when a busy index (409) gave no better figure.
LOCKED_RETRY_AFTER = 5


def error_response(exc: e.IoragError) -> JSONResponse:
    """The JSON response for `exc`: its status from the table, and the headers that status needs."""
    status = status_for(exc)
    headers: dict[str, str] = {}
    wait = getattr(exc, "retry_after", None)
    if status in (429, 503):
        # The API's own figure when it gave one (an exhausted quota names its refresh), else 30 s.
        headers["Retry-After"] = str(max(1, math.ceil(wait)) if wait is not None else 30)
    elif isinstance(exc, e.IndexLockedError):
        headers["Retry-After"] = str(max(1, math.ceil(wait)) if wait is not None else LOCKED_RETRY_AFTER)
    elif status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="iorag"'
    return JSONResponse(error_json(exc), status_code=status, headers=headers)


async def _iorag_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, e.IoragError)
    response = error_response(exc)
    if response.status_code >= 500:
        log.warning("%s %s failed: %s", request.method, request.url.path, exc.user_message())
    return response


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    details = [
        {"field": ".".join(str(p) for p in err.get("loc", ())), "message": err.get("msg", "")} for err in exc.errors()
    ]
    first = details[0] if details else {"field": "body", "message": "invalid request"}
    message = f"{first['field']}: {first['message']}"
    param = first["field"].removeprefix("body.")
    body = error_body("ValidationError", message, code="invalid_request", param=param, details=details)
    return JSONResponse(body, status_code=422)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    """Starlette's own errors (no such route, wrong method) in our shape instead of `{"detail"}`."""
    assert isinstance(exc, StarletteHTTPException)
    error = getattr(exc, "error", None)
    if isinstance(error, e.IoragError):
        # Raised while FastAPI read the body (a body over the cap): that error's own response.
        return error_response(error)
    if exc.status_code == 404:
        kind, message = "NotFoundError", f"no such path: {request.method} {request.url.path}"
        hint = "the API is under /v1 (see /docs); the web page is at /"
    elif exc.status_code == 405:
        kind, message, hint = "MethodNotAllowedError", f"{request.method} is not allowed on {request.url.path}", ""
    else:
        kind, message, hint = "HTTPError", str(exc.detail), ""
    body = error_body(kind, message, hint, code=CODE_BY_STATUS.get(exc.status_code, "error"))
    return JSONResponse(body, status_code=exc.status_code, headers=getattr(exc, "headers", None))


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("%s %s crashed", request.method, request.url.path)
    return JSONResponse(error_body("InternalError", "internal error; see the server log", code="server_error"), status_code=500)


def register(app: FastAPI) -> None:
    app.add_exception_handler(e.IoragError, _iorag_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
