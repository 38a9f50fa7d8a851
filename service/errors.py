"""Errors of the read path and the service's access rules, on top of indexer's tree.

    IoragError
    ├── QueryError    a question or query that cannot be served (empty, too long)
    │   └── ModelNotServedError  a model id this server does not serve for that request
    │   └── NotAllowedError        a model or completion budget this server does not allow
    ├── BudgetError   a question that cannot fit the chat model's context at all
    ├── DocumentNotFoundError      a document id the index does not hold
    ├── DocumentConflictError      an HTTP add that would replace a document indexed from a file
    ├── CollectionNotFoundError    a collection never created
    ├── CollectionExistsError      creating a collection that exists
    └── AccessError   a request the server refuses before doing any work
        ├── UnauthorizedError      no key, or a key the server does not know
        ├── ForbiddenError         a key without the scope or the collection asked for
        ├── PayloadTooLargeError   a body over the size cap
        ├── RateLimitedError       over the key's requests per minute
        └── OverloadedError        over the cap on concurrent requests
"""

from __future__ import annotations

from indexer.errors import IoragError


class QueryError(IoragError):
    """A question or search query that cannot be served as given."""


class ModelNotServedError(QueryError):
    """A request names a model this server cannot use for it (e.g. another embedding model)."""
class NotAllowedError(QueryError):
    """A chat model or completion budget outside what this server allows HTTP callers."""


class BudgetError(IoragError):
    """The question alone does not fit the chat model's context length."""


class DocumentNotFoundError(IoragError):
    """A document id the index does not hold."""


class DocumentConflictError(IoragError):
    """An add over HTTP that would replace documents indexed from files."""


class CollectionNotFoundError(IoragError):
    """A collection that was never created."""


class CollectionExistsError(IoragError):
    """A collection that exists already."""


class AccessError(IoragError):
    """A request refused before any work; `retry_after` says when to retry, if ever."""

    retry_after: float | None = None

    def __init__(self, message: str, *, hint: str = "", retry_after: float | None = None) -> None:
        super().__init__(message, hint=hint)
        if retry_after is not None:
            self.retry_after = retry_after


class UnauthorizedError(AccessError):
    hint = "send `Authorization: Bearer KEY` with a key from `iorag keys add`"


class ForbiddenError(AccessError):
    """The key is valid but does not grant this operation or collection."""


class PayloadTooLargeError(AccessError):
    """A request body over the server's cap."""


class RateLimitedError(AccessError):
    hint = "wait for Retry-After seconds, or ask for a higher IORAG_RATE_LIMIT"


class OverloadedError(AccessError):
    hint = "the server is at its cap of concurrent requests; retry shortly"
