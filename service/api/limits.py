"""Request limits applied while the request arrives: body size and concurrent requests.

The body cap is checked against Content-Length before anything is read, and
again on every chunk received (a chunked body has no length), so an oversized
body is refused with 413 after at most the cap has been buffered.
"""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..errors import OverloadedError, PayloadTooLargeError
from .errors import error_response

#: Paths whose bodies are uploads, with the larger cap.
UPLOAD_PREFIXES = ("/v1/files",)
#: Seconds to suggest to a caller refused for lack of capacity.
OVERLOAD_RETRY_AFTER = 1.0


class BodyTooLarge(HTTPException):
    """Raised from `receive`; an HTTPException so that FastAPI's body parsing lets it through."""

    def __init__(self, error: PayloadTooLargeError) -> None:
        super().__init__(413, str(error))
        self.error = error


class BodyLimitMiddleware:
    """413 for bodies over `max_body` (`max_upload` under UPLOAD_PREFIXES)."""

    def __init__(self, app: ASGIApp, *, max_body: int, max_upload: int) -> None:
        self.app = app
        self.max_body = max_body
        self.max_upload = max_upload

    def _cap(self, path: str) -> int:
        return self.max_upload if any(path == p or path.startswith(p + "/") for p in UPLOAD_PREFIXES) else self.max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cap = self._cap(scope["path"])
        too_large = PayloadTooLargeError(
            f"the request body is over the {cap:,}-byte limit",
            hint="send less per request" + (" (IORAG_MAX_UPLOAD_BYTES)" if cap == self.max_upload else " (IORAG_MAX_BODY_BYTES)"),
        )
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared > cap:
                    await error_response(too_large)(scope, receive, send)
                    return
        received = 0
        started = False

        async def counted_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > cap:
                    raise BodyTooLarge(too_large)
            return message

        async def tracked_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted_receive, tracked_send)
        except BodyTooLarge:
            if started:
                raise
            await error_response(too_large)(scope, receive, send)


class ConcurrencyMiddleware:
    """503 with Retry-After for requests beyond `limit` in flight (a streamed answer counts until it ends)."""

    def __init__(self, app: ASGIApp, *, limit: int) -> None:
        self.app = app
        self.limit = limit
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.limit:
            exc = OverloadedError(
                f"the server is serving {self.in_flight} requests, its limit", retry_after=OVERLOAD_RETRY_AFTER
            )
            await error_response(exc)(scope, receive, send)
            return
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1
