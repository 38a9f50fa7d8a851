"""Errors of the read path, on top of indexer's tree.

    IoragError
    ├── QueryError    a question or query that cannot be served (empty, too long)
    │   └── ModelNotServedError  a model id this server does not serve for that request
    ├── BudgetError   a question that cannot fit the chat model's context at all
    └── DocumentNotFoundError  a document id the index does not hold
"""

from __future__ import annotations

from indexer.errors import IoragError


class QueryError(IoragError):
    """A question or search query that cannot be served as given."""


class ModelNotServedError(QueryError):
    """A request names a model this server cannot use for it (e.g. another embedding model)."""


class BudgetError(IoragError):
    """The question alone does not fit the chat model's context length."""


class DocumentNotFoundError(IoragError):
    """A document id the index does not hold."""
