"""The model catalog: every model of the IO Intelligence docs with its figures, tokenizer families, merging.

The tables below are pinned on purpose, copied from the docs rather than from
`indexer/catalog.py`: a figure changed by accident in the catalog fails here.
"""

from __future__ import annotations

import pytest

from indexer.catalog import (
    DEFAULT_REMOTE_CHAT_MODEL,
    DEFAULT_REMOTE_EMBEDDING_MODEL,
    EXTRACTIVE_MODEL,
    GEMMA_RETRIEVAL_TASK,
    LOCAL_EMBEDDING_MODEL,
    Catalog,
    ModelInfo,
    default_catalog,
    guess_tokenizer,
)
from indexer.errors import ConfigError
from indexer.tokens import FAMILIES, EstimatingCounter, counter_for

CATALOG = default_catalog()

#: Chat models of the docs: id -> (context length, which table lists it).
DOCS_CHAT_MODELS: dict[str, tuple[int | None, str]] = {
    "deepseek-ai/DeepSeek-R1-0528": (128_000, "current"),
    "swiss-ai/Apertus-70B-Instruct-2509": (131_072, "current"),
    "meta-llama/Llama-4-Maverick-17B-128E-Instruct-FP8": (430_000, "current"),
    "openai/gpt-oss-120b": (131_072, "current"),
    "Intel/Qwen3-Coder-480B-A35B-Instruct-int4-mixed-ar": (106_000, "current"),
    "Qwen/Qwen3-Next-80B-A3B-Instruct": (262_144, "current"),
    "openai/gpt-oss-20b": (131_072, "current"),
    "Qwen3-235B-A22B-Thinking-2507": (262_144, "current"),
    "mistralai/Mistral-Nemo-Instruct-2407": (128_000, "current"),
    "mistralai/Magistral-Small-2506": (128_000, "current"),
    "mistralai/Devstral-Small-2505": (128_000, "current"),
    "LLM360/K2-Think": (152_064, "current"),
    "meta-llama/Llama-3.3-70B-Instruct": (128_000, "current"),
    "mistralai/Mistral-Large-Instruct-2411": (128_000, "current"),
    "Qwen/Qwen2.5-VL-32B-Instruct": (32_000, "current"),
    "meta-llama/Llama-3.2-90B-Vision-Instruct": (16_000, "current"),
    "deepseek-ai/DeepSeek-R1-Distill-Llama-70B": (128_000, "earlier"),
    "Qwen/Qwen3-235B-A22B-FP8": (128_000, "earlier"),
    "deepseek-ai/DeepSeek-R1": (128_000, "earlier"),
    "Qwen/QwQ-32B": (32_000, "earlier"),
    "deepseek-ai/DeepSeek-R1-Distill-Qwen-32B": (128_000, "earlier"),
    "databricks/dbrx-instruct": (32_000, "earlier"),
    "neuralmagic/Llama-3.1-Nemotron-70B-Instruct-HF-FP8-dynamic": (128_000, "earlier"),
    "microsoft/phi-4": (16_000, "earlier"),
    "nvidia/AceMath-7B-Instruct": (4_000, "earlier"),
    "google/gemma-3-27b-it": (8_000, "earlier"),
    "watt-ai/watt-tool-70B": (128_000, "earlier"),
    "SentientAGI/Dobby-Mini-Unhinged-Llama-3.1-8B": (128_000, "earlier"),
    "tiiuae/Falcon3-10B-Instruct": (32_000, "earlier"),
    "bespokelabs/Bespoke-Stratos-32B": (32_000, "earlier"),
    "netease-youdao/Confucius-o1-14B": (32_000, "earlier"),
    "CohereForAI/aya-expanse-32b": (8_000, "earlier"),
    "Qwen/Qwen2.5-Coder-32B-Instruct": (32_000, "earlier"),
    "NovaSky-AI/Sky-T1-32B-Preview": (32_000, "earlier"),
    "THUDM/glm-4-9b-chat": (128_000, "earlier"),
    "mistralai/Ministral-8B-Instruct-2410": (32_000, "earlier"),
    "jinaai/ReaderLM-v2": (512_000, "earlier"),
    "openbmb/MiniCPM3-4B": (32_000, "earlier"),
    "Qwen/Qwen2.5-1.5B-Instruct": (32_000, "earlier"),
    "ibm-granite/granite-3.1-8b-instruct": (128_000, "earlier"),
    "ozone-ai/0x-lite": (32_000, "earlier"),
    "microsoft/Phi-3.5-mini-instruct": (128_000, "earlier"),
    "Qwen/Qwen2-VL-7B-Instruct": (None, "earlier"),  # the docs give no context length
}

#: Embedding models: id -> (context length = per-input limit, dimensions, tokenizer, listed, provider).
EMBEDDING_MODELS: dict[str, tuple[int, int, str, str, str]] = {
    "BAAI/bge-multilingual-gemma2": (4_096, 3_584, "gemma", "current", "remote"),
    "mixedbread-ai/mxbai-embed-large-v1": (512, 1_024, "bert-uncased", "earlier", "remote"),
    LOCAL_EMBEDDING_MODEL: (256, 384, "bert-uncased", "local", "local"),
}


def test_every_docs_model_is_present_with_its_context_length() -> None:
    ionet = [m for m in CATALOG if m.listed != "iio"]  # the IIO AI Platform's models are tested apart
    chat = {m.id: m for m in ionet if m.kind == "chat"}
    assert set(chat) == set(DOCS_CHAT_MODELS), "the catalog and the docs list different chat models"
    for model_id, (context, listed) in DOCS_CHAT_MODELS.items():
        model = chat[model_id]
        assert (model.context_length, model.listed) == (context, listed), model_id
        assert model.provider == "remote" and model.source == "catalog" and model.dims is None
    embedding = {m.id: m for m in ionet if m.kind == "embedding"}
    assert set(embedding) == set(EMBEDDING_MODELS)
    for model_id, (context, dims, tokenizer, listed, provider) in EMBEDDING_MODELS.items():
        model = embedding[model_id]
        assert (model.context_length, model.embedding_limit, model.dims) == (context, context, dims), model_id
        assert (model.tokenizer, model.listed, model.provider) == (tokenizer, listed, provider), model_id
    assert len(ionet) == len(DOCS_CHAT_MODELS) + len(EMBEDDING_MODELS)
    assert EXTRACTIVE_MODEL not in CATALOG  # offline answers need no catalog entry


def test_the_figures_the_budget_depends_on() -> None:
    assert CATALOG.get("nvidia/AceMath-7B-Instruct").context_length == 4_000
    assert CATALOG.get("meta-llama/Llama-4-Maverick-17B-128E-Instruct-FP8").context_length == 430_000
    assert CATALOG.get("BAAI/bge-multilingual-gemma2", kind="embedding").embedding_limit == 4_096
    assert CATALOG.get("mixedbread-ai/mxbai-embed-large-v1", kind="embedding").embedding_limit == 512
    assert CATALOG.get(DEFAULT_REMOTE_CHAT_MODEL).kind == "chat"
    assert CATALOG.get(DEFAULT_REMOTE_EMBEDDING_MODEL).kind == "embedding"
    # Chat models have no embedding limit.
    assert CATALOG.get("nvidia/AceMath-7B-Instruct").embedding_limit is None


def test_daily_quotas() -> None:
    assert CATALOG.get("BAAI/bge-multilingual-gemma2").daily_quota_tokens == 1_000_000
    assert CATALOG.get("mixedbread-ai/mxbai-embed-large-v1").daily_quota_tokens == 50_000_000
    assert CATALOG.get("meta-llama/Llama-3.3-70B-Instruct").daily_quota_tokens == 1_000_000
    # Vision models have no chat quota in the docs.
    assert CATALOG.get("Qwen/Qwen2.5-VL-32B-Instruct").daily_quota_tokens is None
    assert CATALOG.get("meta-llama/Llama-3.2-90B-Vision-Instruct").daily_quota_tokens is None


@pytest.mark.parametrize(
    ("model_id", "family"),
    [
        # Built on Qwen2.5 (AceMath on Qwen2.5-Math, 0x-lite on Qwen2.5-14B): the Qwen tokenizer.
        ("nvidia/AceMath-7B-Instruct", "qwen"),
        ("ozone-ai/0x-lite", "qwen"),
        ("deepseek-ai/DeepSeek-R1-Distill-Qwen-32B", "qwen"),
        ("bespokelabs/Bespoke-Stratos-32B", "qwen"),
        ("LLM360/K2-Think", "qwen"),
        ("jinaai/ReaderLM-v2", "qwen"),
        ("Qwen/QwQ-32B", "qwen"),
        ("Qwen3-235B-A22B-Thinking-2507", "qwen"),
        # Llama 3 and its fine-tunes; the R1 distill of Llama-3.3-70B says "Llama" without the "3".
        ("meta-llama/Llama-3.3-70B-Instruct", "llama3"),
        ("deepseek-ai/DeepSeek-R1-Distill-Llama-70B", "llama3"),
        ("watt-ai/watt-tool-70B", "llama3"),
        ("neuralmagic/Llama-3.1-Nemotron-70B-Instruct-HF-FP8-dynamic", "llama3"),
        ("google/gemma-3-27b-it", "gemma"),
        # Tokenizers of their own.
        ("meta-llama/Llama-4-Maverick-17B-128E-Instruct-FP8", "other"),
        ("deepseek-ai/DeepSeek-R1-0528", "other"),
        ("tiiuae/Falcon3-10B-Instruct", "other"),
        ("ibm-granite/granite-3.1-8b-instruct", "other"),
        ("microsoft/phi-4", "other"),
        ("microsoft/Phi-3.5-mini-instruct", "other"),
        ("THUDM/glm-4-9b-chat", "other"),
        ("openbmb/MiniCPM3-4B", "other"),
        ("mistralai/Mistral-Nemo-Instruct-2407", "other"),
        ("openai/gpt-oss-120b", "other"),
    ],
)
def test_tokenizer_family(model_id: str, family: str) -> None:
    assert CATALOG.get(model_id).tokenizer == family


def test_acemath_is_counted_like_qwen() -> None:
    counter = counter_for(CATALOG.get("nvidia/AceMath-7B-Instruct"))
    assert isinstance(counter, EstimatingCounter) and counter.family == FAMILIES["qwen"]
    assert counter.family.factor == 1.05 and counter.family.split_digits
    # Digits are one token each for Qwen: "2025" is four, not cl100k's two.
    assert counter.count("2025") > counter_for(CATALOG.get("meta-llama/Llama-3.3-70B-Instruct")).count("2025")


def test_guess_tokenizer_for_models_only_the_api_knows() -> None:
    assert guess_tokenizer("nvidia/AceMath-72B-Instruct") == "qwen"
    assert guess_tokenizer("deepseek-ai/DeepSeek-R1-Distill-Llama-8B") == "llama3"
    assert guess_tokenizer("deepseek-ai/DeepSeek-R1-Distill-Qwen-7B") == "qwen"
    assert guess_tokenizer("acme/gemma-2-9b-it") == "gemma"
    assert guess_tokenizer("acme/Unknown-7B") == "other"
    assert all(guess_tokenizer(m.id) in FAMILIES for m in CATALOG if m.kind == "chat")


def test_merged_keeps_known_figures_when_the_update_has_none() -> None:
    ace = CATALOG.get("nvidia/AceMath-7B-Instruct")
    gemma = CATALOG.get("BAAI/bge-multilingual-gemma2")
    unknown = [
        ModelInfo(id=ace.id, kind="chat", context_length=None, tokenizer="other", source="api", listed="api"),
        ModelInfo(id=gemma.id, kind="embedding", context_length=None, tokenizer="other", source="api", listed="api"),
    ]
    merged = CATALOG.merged(unknown)
    assert merged.get(ace.id) == ace, "an update without figures changed the catalog's entry"
    assert merged.get(gemma.id) == gemma
    assert merged.get(ace.id).tokenizer == "qwen" and merged.get(ace.id).source == "catalog"


def test_merged_takes_the_apis_figures_and_adds_unknown_models() -> None:
    updates = [
        ModelInfo(id="nvidia/AceMath-7B-Instruct", kind="chat", context_length=4_096, tokenizer="other",
                  max_output_tokens=2_048, source="api", listed="api"),
        ModelInfo(id="BAAI/bge-multilingual-gemma2", kind="embedding", context_length=None, tokenizer="other",
                  dims=1_024, source="api", listed="api"),
        ModelInfo(id="acme/New-Chat-32K", kind="chat", context_length=32_768, tokenizer="other",
                  source="api", listed="api"),
    ]
    merged = CATALOG.merged(updates)
    ace = merged.get("nvidia/AceMath-7B-Instruct")
    assert (ace.context_length, ace.max_output_tokens, ace.source) == (4_096, 2_048, "api")
    # What the API cannot know stays the catalog's: tokenizer, listing, quota, query template.
    assert (ace.tokenizer, ace.listed, ace.daily_quota_tokens) == ("qwen", "earlier", 1_000_000)
    gemma = merged.get("BAAI/bge-multilingual-gemma2")
    assert (gemma.context_length, gemma.dims, gemma.source) == (4_096, 1_024, "catalog")
    assert gemma.query_template == CATALOG.get("BAAI/bge-multilingual-gemma2").query_template
    assert merged.get("acme/New-Chat-32K") == updates[2]
    assert len(merged) == len(CATALOG) + 1
    assert "acme/New-Chat-32K" not in CATALOG, "merged() changed the catalog it was called on"
    assert isinstance(merged, Catalog)


def test_format_query_of_the_embedding_models() -> None:
    query = "When does the quota refresh?"
    gemma = CATALOG.get("BAAI/bge-multilingual-gemma2").format_query(query)
    assert gemma == f"<instruct>{GEMMA_RETRIEVAL_TASK}\n<query>{query}"
    assert gemma == "<instruct>Given a question, retrieve passages that answer the question\n<query>" + query
    mxbai = CATALOG.get("mixedbread-ai/mxbai-embed-large-v1").format_query(query)
    assert mxbai == "Represent this sentence for searching relevant passages: " + query
    assert CATALOG.get(LOCAL_EMBEDDING_MODEL).format_query(query) == query
    # Braces in a query are text, not template fields.
    assert CATALOG.get(LOCAL_EMBEDDING_MODEL).format_query("{task} {0}") == "{task} {0}"


def test_get_refuses_unknown_ids_and_the_wrong_kind() -> None:
    with pytest.raises(ConfigError, match="unknown model"):
        CATALOG.get("acme/nope")
    with pytest.raises(ConfigError, match="not a embedding model|not an embedding model"):
        CATALOG.get("nvidia/AceMath-7B-Instruct", kind="embedding")
    with pytest.raises(ConfigError, match="not a chat model"):
        CATALOG.get("mixedbread-ai/mxbai-embed-large-v1", kind="chat")
