"""Who may call what: the route scope table, bearer keys, collections and per-key rate limits.

One ASGI middleware applies the table to every request before the body is
read, so a refused caller costs nothing; the OpenAPI spec is documented from
the same table (`openapi.py`). A route is matched by method and path prefix
(first match wins); a `/v1` path the table does not name needs `admin`, so a
new route is closed until it is listed. Paths outside `/v1` and `/metrics`
(the web page, its assets, `/docs`, `/openapi.json`) need no key.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Any, Final, Literal

from limits import RateLimitItemPerMinute
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from indexer.errors import ConfigError, IoragError

from ..collections import check_name
from ..config import Settings
from ..errors import ForbiddenError, OverloadedError, RateLimitedError, UnauthorizedError
from ..keys import ApiKey, KeyFileError, KeyStore
from .errors import error_response

Need = Literal["open", "read", "write", "admin"]
#: No key needed (the answer says less to anonymous callers when keys exist).
OPEN: Final = "open"


@dataclass(frozen=True)
class Rule:
    method: str  # an HTTP method, or "*"
    path: str  # matches itself and anything below it (`/v1/documents` matches `/v1/documents/x`)
    need: Need
    #: Whether the route works in one collection (X-Collection); False: server-wide, so bound keys are refused.
    collection: bool = True


RULES: tuple[Rule, ...] = (
    Rule("GET", "/v1/health", OPEN),
    Rule("POST", "/v1/search", "read"),
    Rule("POST", "/v1/ask", "read"),
    Rule("POST", "/v1/chat/completions", "read"),
    Rule("POST", "/v1/embeddings", "read"),
    Rule("GET", "/v1/models", "read"),
    Rule("GET", "/v1/documents", "read"),
    Rule("POST", "/v1/documents", "write"),
    Rule("DELETE", "/v1/documents", "write"),
    Rule("POST", "/v1/files", "write"),
    # Listing shows a bound key only its own collection; creating and deleting are server-wide.
    Rule("GET", "/v1/collections", "read"),
    Rule("*", "/v1/collections", "admin", collection=False),
    Rule("GET", "/metrics", "admin", collection=False),
)
log = logging.getLogger("iorag.access")

#: What a `/v1` route missing from RULES needs: closed until someone lists it.
UNLISTED = Rule("*", "/v1", "admin")
#: Paths under these are the API: keys, collections and rate limits apply.
API_PREFIXES = ("/v1", "/metrics")


def _under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix.rstrip("/") + "/")


def rule_for(method: str, path: str) -> Rule | None:
    """The rule for a request (or a route template); None outside the API."""
    if not any(_under(path, p) for p in API_PREFIXES):
        return None
    for rule in RULES:
        if rule.method in ("*", method) and _under(path, rule.path):
            return rule
    return UNLISTED


@dataclass(frozen=True)
class Caller:
    """Who is calling, as the routes see it in `request.state.caller`."""

    #: The key used; None when no key was sent or the server has no keys.
    key: ApiKey | None
    #: The server has no keys: everything is allowed (it is bound to loopback, or run `--insecure`).
    open_server: bool
    collection: str

    @property
    def sees_everything(self) -> bool:
        return self.open_server or (self.key is not None and self.key.collection is None)

    def may_see(self, collection: str) -> bool:
        return self.open_server or (self.key is not None and self.key.collection in (None, collection))

    @property
    def identified(self) -> bool:
        """Whether the caller may see collection data on open routes."""
        return self.open_server or self.key is not None


class RateLimiter:
    """Requests per minute per caller, over a moving window (the `limits` library)."""

    def __init__(self, per_minute: int) -> None:
        self.item = RateLimitItemPerMinute(per_minute) if per_minute > 0 else None
        self._limiter = MovingWindowRateLimiter(MemoryStorage()) if self.item else None

    def hit(self, identity: str) -> tuple[bool, dict[str, str]]:
        """Count one request; (allowed, the X-RateLimit-* headers)."""
        if self.item is None or self._limiter is None:
            return True, {}
        allowed = self._limiter.hit(self.item, identity)
        stats = self._limiter.get_window_stats(self.item, identity)
        reset = max(0, math.ceil(stats.reset_time - time.time()))
        headers = {
            "X-RateLimit-Limit": str(self.item.amount),
            "X-RateLimit-Remaining": str(stats.remaining),
            "X-RateLimit-Reset": str(reset),
        }
        if not allowed:
            headers["Retry-After"] = str(max(1, reset))
        return allowed, headers


def bearer_token(scope: Scope) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            return token.strip() if scheme.lower() == "bearer" and token.strip() else ""
    return None


def header(scope: Scope, wanted: bytes) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == wanted:
            return value.decode("latin-1")
    return None


class AccessMiddleware:
    """Applies RULES: authenticates, picks the collection, counts the rate limit, refuses early."""

    def __init__(self, app: ASGIApp, *, settings: Settings, keys: KeyStore, limiter: RateLimiter) -> None:
        self.app = app
        self.settings = settings
        self.keys = keys
        self.limiter = limiter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rule = rule_for(scope["method"], scope["path"])
        if rule is None:
            await self.app(scope, receive, send)
            return
        rate_headers: dict[str, str] = {}
        try:
            caller = self._caller(scope, rule)
            identity = f"key:{caller.key.name}" if caller.key else f"addr:{(scope.get('client') or ('?',))[0]}"
            # A keyless server on loopback has one trusted user: limits are for shared servers.
            shared = not caller.open_server or self.settings.insecure
            allowed, rate_headers = self.limiter.hit(identity) if shared else (True, {})
            if not allowed:
                raise RateLimitedError(
                    f"rate limit of {self.settings.rate_limit} requests per minute reached",
                    retry_after=float(rate_headers.get("Retry-After", "60")),
                )
        except IoragError as exc:
            response = error_response(exc)
            response.headers.update(rate_headers)
            await response(scope, receive, send)
            return
        scope.setdefault("state", {})["caller"] = caller

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start" and rate_headers:
                message.setdefault("headers", [])
                message["headers"] = list(message["headers"]) + [
                    (k.lower().encode(), v.encode()) for k, v in rate_headers.items()
                ]
            await send(message)

        await self.app(scope, receive, send_with_headers)

    def _caller(self, scope: Scope, rule: Rule) -> Caller:
        try:
            keys = self.keys.keys()
        except KeyFileError as exc:
            # Fail closed, and keep the file's path and the parse error in the log.
            log.error("%s", exc)
            raise OverloadedError("the server cannot read its API keys; tell its operator") from exc
        token = bearer_token(scope)
        key = self.keys.find(token) if token else None
        if not keys:
            # No keys: the server is on loopback (or run with --insecure) and trusts its callers.
            return Caller(None, True, self._collection(scope, None, rule))
        if rule.need != "open":
            if token is None:
                raise UnauthorizedError("this route needs an API key")
            if key is None:
                raise UnauthorizedError("unknown API key")
            if not key.grants(rule.need):
                raise ForbiddenError(
                    f"key {key.name!r} has the {key.scope} scope; this route needs {rule.need}",
                    hint="ask an admin for a key with that scope",
                )
            if not rule.collection and key.collection is not None:
                raise ForbiddenError(f"key {key.name!r} is bound to one collection; this route is server-wide")
        collection = self._collection(scope, key, rule)
        if rule.collection and key is not None and key.collection not in (None, collection):
            raise ForbiddenError(f"key {key.name!r} may not use collection {collection!r}")
        return Caller(key, False, collection)

    def _collection(self, scope: Scope, key: ApiKey | None, rule: Rule | None = None) -> str:
        if rule is not None and not rule.collection:
            return self.settings.collection  # server-wide: the header means nothing here
        asked = header(scope, b"x-collection")
        if asked is None or not asked.strip():
            # A key bound to one collection works there without the header.
            return key.collection if key is not None and key.collection else self.settings.collection
        try:
            return check_name(asked.strip())
        except ConfigError as exc:
            raise ConfigError(f"X-Collection: {exc}", hint=exc.hint) from exc


def caller_of(state: Any) -> Caller:
    """The caller the middleware recorded (a full-access caller when the app runs without it)."""
    caller = getattr(state, "caller", None)
    return caller if isinstance(caller, Caller) else Caller(None, True, "default")
