"""Wire schemas, named by role (request, response, hit)."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, field_validator

#: Per-field caps on what callers send (the body cap bounds the total).
MAX_TEXT_CHARS = 1_000_000
MAX_METADATA_BYTES = 16_384
MAX_METADATA_DEPTH = 4
MAX_MESSAGES = 200


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


class ErrorBody(BaseModel):
    type: str
    message: str
    hint: str | None = None
    details: list[dict[str, Any]] | None = None


class ErrorResponse(BaseModel):
    """Every error: `{"error": {"type", "message", "hint"?}}`."""

    error: ErrorBody


class Hit(BaseModel):
    chunk_id: str
    doc_id: str
    title: str
    headings: list[str] = []
    text: str
    score: float
    location: dict[str, Any] | None = Field(
        default=None, description='Where in the file: {"page": 7}, {"slide": 3}, {"sheet": "Q3", "row": 12}; null if none.'
    )


class SearchRequest(BaseModel):
    # Emptiness is checked by the service, so an empty or blank query is a 400 (QueryError), not a 422.
    query: str = Field(max_length=20_000)
    top_k: int | None = Field(default=None, ge=1, le=1000)
    mode: Literal["hybrid", "dense", "lexical"] | None = None


class SearchResponse(BaseModel):
    results: list[Hit]


class Turn(BaseModel):
    role: Literal["user", "assistant"]
    content: str = Field(max_length=100_000)


class AskRequest(BaseModel):
    # Emptiness is checked by the service, so an empty or blank question is a 400 (QueryError), not a 422.
    question: str = Field(max_length=20_000)
    history: list[Turn] = Field(
        default=[], max_length=200, description="Earlier turns of the conversation, oldest first."
    )
    model: str | None = Field(default=None, description="Chat model id, or `extractive`.")
    top_k: int | None = Field(default=None, ge=1, le=1000)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    stream: bool = False


class UsageOut(BaseModel):
    prompt_tokens: int
    completion_tokens: int


class ContextOut(BaseModel):
    chunks: int
    tokens: int
    dropped: int
    budget: int | None = Field(
        default=None, description="Prompt tokens the context was packed into, at most (chat models only)."
    )


class AskResponse(BaseModel):
    answer: str
    model: str
    sources: list[Hit]
    usage: UsageOut
    context: ContextOut
    cited: list[int] = Field(default=[], description="1-based numbers of the sources the answer cites.")
    query: str = Field(default="", description="What retrieval searched for: the question, or the follow-up made to stand alone.")
    retrieved: list[Hit] = Field(
        default=[], description="Every chunk the answer was drawn from, in rank order; `sources` are the cited ones."
    )


class DocumentIn(BaseModel):
    id: str = Field(min_length=1, max_length=1024)
    text: str = Field(min_length=1, max_length=MAX_TEXT_CHARS)
    title: str = Field(default="", max_length=1024)
    metadata: dict[str, Any] = Field(
        default={}, description=f"At most {MAX_METADATA_BYTES} bytes as JSON, nested at most {MAX_METADATA_DEPTH} deep."
    )

    @field_validator("metadata")
    @classmethod
    def _bounded(cls, value: dict[str, Any]) -> dict[str, Any]:
        size = len(json.dumps(value, ensure_ascii=False).encode())
        if size > MAX_METADATA_BYTES:
            raise ValueError(f"metadata is {size} bytes as JSON; the most accepted is {MAX_METADATA_BYTES}")
        if _depth(value) > MAX_METADATA_DEPTH:
            raise ValueError(f"metadata is nested deeper than {MAX_METADATA_DEPTH} levels")
        return value


class DocumentsRequest(BaseModel):
    documents: list[DocumentIn] = Field(min_length=1, max_length=10_000)
    replace: bool = Field(
        default=False, description="Replace documents indexed from files that have these ids (refused otherwise, 409)."
    )


class DocumentsResponse(BaseModel):
    added: int
    updated: int
    unchanged: int
    documents: int
    chunks: int
    chunks_embedded: int
    problems: list[str] = []


class ProblemOut(BaseModel):
    source: str
    reason: str


class FilesResponse(BaseModel):
    documents: list[str] = Field(description="Ids of the documents indexed from the files (each file's name).")
    added: int
    updated: int
    unchanged: int
    chunks: int = Field(description="Chunks those documents have in the index.")
    problems: list[ProblemOut] = []


class DocumentSummaryOut(BaseModel):
    doc_id: str
    title: str
    source: str
    chunks: int
    metadata: dict[str, Any]


class DocumentListResponse(BaseModel):
    documents: list[DocumentSummaryOut]
    total: int
    offset: int
    limit: int


class DeleteResponse(BaseModel):
    deleted: str
    documents: int
    chunks: int


class ModelOut(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int = 0
    owned_by: str
    kind: str
    context_length: int | None
    max_output_tokens: int | None
    embedding_limit: int | None
    dims: int | None
    provider: str
    source: str
    listed: str
    tokenizer: str
    daily_quota_tokens: int | None


class ModelsResponse(BaseModel):
    """OpenAI's list shape; `note` says when the API's /models could not be read."""

    object: Literal["list"] = "list"
    data: list[ModelOut]
    note: str = ""


class ChatMessage(BaseModel):
    role: Literal["system", "user", "assistant", "tool", "developer"]
    content: (
        Annotated[str, Field(max_length=MAX_TEXT_CHARS)]
        | Annotated[list[dict[str, Any]], Field(max_length=MAX_MESSAGES)]
        | None
    ) = None


class ChatCompletionRequest(BaseModel):
    """OpenAI-style request; the last user message is the question."""

    model: str | None = None
    messages: list[ChatMessage] = Field(min_length=1, max_length=MAX_MESSAGES)
    stream: bool = False
    max_completion_tokens: int | None = Field(default=None, ge=1)
    max_tokens: int | None = Field(default=None, ge=1, description="Deprecated; use max_completion_tokens.")
    top_k: int | None = Field(default=None, ge=1, le=1000, description="iorag extension: chunks to retrieve.")


class EmbeddingsRequest(BaseModel):
    """OpenAI's request; `model` must be the index's embedding model (see GET /v1/health)."""

    input: str | list[str] | list[int] | list[list[int]]
    model: str | None = Field(default=None, description="The index's embedding model; omitted means that one.")
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(default=None, ge=1)
    user: str | None = None


class CollectionCreate(BaseModel):
    name: str = Field(
        pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$",
        description="1-63 lower-case letters, digits, '-' or '_', starting with a letter or digit.",
    )


class CollectionOut(BaseModel):
    name: str
    documents: int
    chunks: int
    embedding_model: str | None


class CollectionsResponse(BaseModel):
    collections: list[CollectionOut]
