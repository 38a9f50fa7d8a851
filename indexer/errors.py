"""The iorag error tree: every failure a user can act on is one of these.

    IoragError
    ├── ConfigError                 bad settings or arguments
    ├── SourceError                 a document that cannot be read (names the file)
    ├── ChunkingError               text that cannot be cut to fit a limit
    ├── ApiError                    IO Intelligence answered with an error
    │   ├── AuthenticationError     401: the key is missing or wrong
    │   ├── PaymentRequiredError    402: the model needs a higher tier
    │   ├── ModelNotFoundError      404: unknown model
    │   ├── BadRequestError         400/422: the request was refused
    │   │   └── ContextLengthError  400: input longer than the model accepts
    │   ├── RateLimitError          429 after every retry
    │   ├── QuotaExhaustedError     the quota is used up until its refresh
    │   ├── InvalidResponseError    a 2xx the client cannot read (bad JSON, a stream cut short)
    │   └── ServiceUnavailableError 5xx, timeouts, dropped connections after every retry
    ├── EmbeddingError              an embedder failed for another reason
    └── StoreError                  the index on disk
        ├── IndexNotFoundError      no index at that place yet
        ├── DimensionMismatchError  index built with another model or dimension
        ├── IndexLockedError        another writer holds the index
        └── CorruptIndexError       files that cannot be read back
"""

from __future__ import annotations


class IoragError(Exception):
    """Base of every error iorag raises on purpose; its message is shown to users."""

    #: A short hint on what to do; the CLI prints it after the message.
    hint: str = ""

    def __init__(self, message: str, *, hint: str = "") -> None:
        super().__init__(message)
        if hint:
            self.hint = hint

    def user_message(self) -> str:
        """One line: what went wrong and, when known, what to do."""
        text = str(self)
        return f"{text} ({self.hint})" if self.hint else text


class ConfigError(IoragError):
    """Settings or arguments that cannot work together."""


class SourceError(IoragError):
    """A document that cannot be read; the message names it."""

    def __init__(self, source: str, reason: str) -> None:
        super().__init__(f"{source}: {reason}")
        self.source = source
        self.reason = reason


class ChunkingError(IoragError):
    """Text that cannot be cut into pieces under a token limit."""


class EmbeddingError(IoragError):
    """An embedder failed for a reason other than an API error."""


class ApiError(IoragError):
    """IO Intelligence answered with an error."""

    status_code: int | None = None
    #: Seconds the API said to wait before trying again (Retry-After, or a quota's refresh), if it said.
    retry_after: float | None = None

    def __init__(
        self, message: str, *, status_code: int | None = None, hint: str = "", retry_after: float | None = None
    ) -> None:
        super().__init__(message, hint=hint)
        if status_code is not None:
            self.status_code = status_code
        if retry_after is not None:
            self.retry_after = retry_after


class AuthenticationError(ApiError):
    status_code = 401
    hint = "check IOINTELLIGENCE_API_KEY"


class PaymentRequiredError(ApiError):
    status_code = 402
    hint = "this model needs a higher tier on your account; choose another model"


class ModelNotFoundError(ApiError):
    status_code = 404
    hint = "run `iorag models` to list the models you can use"


class BadRequestError(ApiError):
    status_code = 400


class ContextLengthError(BadRequestError):
    """The server says the input is longer than the model accepts."""

    def __init__(self, message: str, *, limit: int | None = None, requested: int | None = None) -> None:
        super().__init__(message, status_code=400)
        self.limit = limit
        self.requested = requested


class RateLimitError(ApiError):
    status_code = 429
    hint = "the API kept answering 429; lower the concurrency or try again later"


class QuotaExhaustedError(ApiError):
    status_code = 429
    hint = "the quota refreshes every 8 or 24 hours; rerun then and indexing resumes where it stopped"


class InvalidResponseError(ApiError):
    """The API answered, but with something iorag cannot read (invalid JSON, a stream that never finished)."""

    status_code = 502
    hint = "the API sent an unreadable answer; try again, and report it if it persists"


class ServiceUnavailableError(ApiError):
    status_code = 503
    hint = "the API is unreachable or failing; try again later"


class StoreError(IoragError):
    """The index on disk."""


class IndexNotFoundError(StoreError):
    hint = "run `iorag index PATH` first"


class DimensionMismatchError(StoreError):
    """The index was built with another embedding model or dimension."""


class IndexLockedError(StoreError):
    """Another writer holds the index; the message names it when it could be read."""

    hint = "wait for the other writer to finish, or use another --index"


class CorruptIndexError(StoreError):
    """Index files that cannot be read back."""
