"""Errors of the read path, on top of indexer's tree.

    IoragError
    ├── QueryError    a question or query that cannot be served (empty, too long)
    ├── BudgetError   a question that cannot fit the chat model's context at all
    └── DocumentNotFoundError  a document id the index does not hold
"""

from __future__ import annotations

from indexer.errors import IoragError


class QueryError(IoragError):
    """A question or search query that cannot be served as given."""


class BudgetError(IoragError):
    """The question alone does not fit the chat model's context length."""


class DocumentNotFoundError(IoragError):
    """A document id the index does not hold."""
