"""Provider: what differs between the upstream APIs iorag speaks to."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Literal, Mapping

if TYPE_CHECKING:
    from ...catalog import ModelInfo

#: What an upstream error code means to iorag.
Meaning = Literal["auth", "quota", "model", "unavailable", "rate_limit", "bad_request"]


@dataclass(frozen=True)
class Provider:
    """One upstream API: its models, parameter names, error codes, health endpoint and tenant header."""

    #: Short name, the value of `IORAG_PROVIDER`.
    name: str
    #: How messages name it.
    title: str
    default_base_url: str
    #: Host names whose base URL selects this provider.
    hosts: tuple[str, ...]
    #: The chat body's name for the completion budget.
    completion_tokens_param: Literal["max_completion_tokens", "max_tokens"]
    #: Health endpoint under the base URL (None: the API has none).
    health_path: str | None = None
    #: Header that routes a request to a tenant (None: the API has none).
    tenant_header: str | None = None
    #: Upstream error code (in the body) -> what it means.
    error_codes: Mapping[str, Meaning] = field(default_factory=dict)
    #: Seconds to wait after an "unavailable" code when the answer has no Retry-After.
    unavailable_wait: float | None = None
    #: How a used-up quota is described, and what to do about it.
    quota_words: str = "quota exhausted"
    quota_hint: str = "the quota refreshes every 8 or 24 hours; rerun then and indexing resumes where it stopped"
    #: Models used when none is named (None: iorag's defaults).
    default_embedding_model: str | None = None
    default_chat_model: str | None = None
    #: The models this provider documents (catalog entries).
    models: Callable[[], tuple["ModelInfo", ...]] = lambda: ()


__all__ = ["Meaning", "Provider"]
