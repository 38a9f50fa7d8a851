"""The one table from errors to HTTP status, and the JSON error shape."""

from __future__ import annotations

import logging
import math

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from indexer import errors as e

from ..errors import BudgetError, DocumentNotFoundError, QueryError

log = logging.getLogger("iorag.api")

#: Most specific class first: the first match wins.
STATUS: tuple[tuple[type[e.IoragError], int], ...] = (
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
    (e.ServiceUnavailableError, 503),
    (e.StoreError, 500),
)


def status_for(exc: e.IoragError) -> int:
    for cls, status in STATUS:
        if isinstance(exc, cls):
            return status
    return 500


def error_body(kind: str, message: str, hint: str = "", **extra: object) -> dict[str, object]:
    body: dict[str, object] = {"type": kind, "message": message}
    if hint:
        body["hint"] = hint
    body.update(extra)
    return {"error": body}


async def _iorag_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, e.IoragError)
    status = status_for(exc)
    headers = None
    if status in (429, 503):
        # The API's own figure when it gave one (an exhausted quota names its refresh), else 30 s.
        wait = getattr(exc, "retry_after", None)
        headers = {"Retry-After": str(max(1, math.ceil(wait)) if wait is not None else 30)}
    if status >= 500:
        log.warning("%s %s failed: %s", request.method, request.url.path, exc.user_message())
    return JSONResponse(error_body(type(exc).__name__, str(exc), exc.hint), status_code=status, headers=headers)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    details = [
        {"field": ".".join(str(p) for p in err.get("loc", ())), "message": err.get("msg", "")} for err in exc.errors()
    ]
    first = details[0] if details else {"field": "body", "message": "invalid request"}
    message = f"{first['field']}: {first['message']}"
    return JSONResponse(error_body("ValidationError", message, details=details), status_code=422)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("%s %s crashed", request.method, request.url.path)
    return JSONResponse(error_body("InternalError", "internal error; see the server log"), status_code=500)


def register(app: FastAPI) -> None:
    app.add_exception_handler(e.IoragError, _iorag_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unexpected)
