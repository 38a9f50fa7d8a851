"""The IIO AI Platform (api.iio.space).

From its API reference (summarised in DESIGN.md, "The second upstream"):
bearer keys starting `iio-dev-`; `X-IIO-Tenant` routes a request to a tenant;
chat takes `max_tokens`; `GET /v1/health` answers
`{"status", "cells", "models", "latency_ms"}`; every response carries
`X-RateLimit-Limit/-Remaining/-Reset` (Free: 10 requests/min and 1,000/month,
Pro: 60/min); error codes 401 `auth_required`, 403 `tier_exceeded` (monthly
limit), 422 `invalid_model` (not on your tier), 429 `rate_limited`
(`Retry-After`), 503 `cell_unavailable` (retry after 30 s, check /v1/health).

Model figures and where each comes from:

- `nomic-embed-text`: 8,192 tokens and 768 dimensions (nomic-embed-text-v1
  and v1.5 model cards on Hugging Face: "SeqLen 8192", "Dimension 768"); its
  tokenizer is BERT's uncased WordPiece (the model starts from a BERT model,
  same model card), counted exactly with the vocabulary iorag ships; queries
  `search_query: `, documents `search_document: ` (model card, "Task
  instruction prefixes").
- `qwen3-embedding:8b`: 32,768 tokens, up to 4,096 dimensions (Xinference's
  Qwen3-Embedding-8B page: "Dimensions: 4096, Max Tokens: 32768"; Keras Hub's
  preset: "32k context length ... dimensions from 32 to 4096"); queries as
  `Instruct: {task}\\nQuery:{query}`, documents bare (Qwen3-Embedding model
  card, restated by mittwald's model page); Qwen tokenizer, estimated.
- `qwen2.5:7b`, `qwen2.5:72b`: 32,768 tokens as configured (Qwen2.5 model
  cards: "The current config.json is set for context length up to 32,768
  tokens"; 131,072 only with YaRN, which a server must turn on), Qwen
  tokenizer, estimated; output up to 8,192 tokens ("can generate up to 8K").
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .base import Provider

if TYPE_CHECKING:
    from ...catalog import ModelInfo

#: The instruction Qwen3-Embedding puts before a retrieval query.
QWEN3_RETRIEVAL_TASK = "Given a web search query, retrieve relevant passages that answer the query"


def _models() -> tuple["ModelInfo", ...]:
    from ...catalog import ModelInfo

    common: dict[str, Any] = {"listed": "iio", "source": "catalog"}
    return (
        ModelInfo(
            id="nomic-embed-text", kind="embedding", context_length=8_192, tokenizer="bert-uncased", dims=768,
            query_template="search_query: {query}", document_template="search_document: {text}", **common,
        ),
        ModelInfo(
            id="qwen3-embedding:8b", kind="embedding", context_length=32_768, tokenizer="qwen", dims=4_096,
            query_template="Instruct: " + QWEN3_RETRIEVAL_TASK + "\nQuery:{query}", **common,
        ),
        ModelInfo(id="qwen2.5:7b", kind="chat", context_length=32_768, tokenizer="qwen", max_output_tokens=8_192, **common),
        ModelInfo(id="qwen2.5:72b", kind="chat", context_length=32_768, tokenizer="qwen", max_output_tokens=8_192, **common),
    )


IIO = Provider(
    name="iio",
    title="IIO AI Platform",
    default_base_url="https://api.iio.space/v1",
    hosts=("api.iio.space",),
    completion_tokens_param="max_tokens",
    health_path="/health",
    tenant_header="X-IIO-Tenant",
    error_codes={
        "auth_required": "auth",
        "tier_exceeded": "quota",
        "invalid_model": "model",
        "rate_limited": "rate_limit",
        "cell_unavailable": "unavailable",
    },
    unavailable_wait=30.0,
    default_embedding_model="nomic-embed-text",
    default_chat_model="qwen2.5:7b",  # the Free tier's only chat model
    quota_words="monthly request limit reached",
    quota_hint="the monthly request limit resets at the start of the next period; rerun then and indexing resumes "
    "where it stopped",
    models=_models,
)

__all__ = ["IIO", "QWEN3_RETRIEVAL_TASK"]
