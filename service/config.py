"""Settings: the one place that reads the environment (CLI flags override it)."""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from indexer.api import DEFAULT_BASE_URL
from indexer.catalog import (
    DEFAULT_REMOTE_CHAT_MODEL,
    DEFAULT_REMOTE_EMBEDDING_MODEL,
    EXTRACTIVE_MODEL,
    LOCAL_EMBEDDING_MODEL,
)
from indexer.api import ClientConfig, Provider, provider_for


class Settings(BaseSettings):
    """Everything iorag can be told; env names are in the README and DESIGN.md."""

    model_config = SettingsConfigDict(env_prefix="IORAG_", extra="ignore", frozen=True)

    api_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("IOINTELLIGENCE_API_KEY", "api_key")
    )
    base_url: str = Field(
        default=DEFAULT_BASE_URL, validation_alias=AliasChoices("IOINTELLIGENCE_BASE_URL", "base_url")
    )
    #: Upstream profile, `ionet` or `iio`; None: chosen from the base URL.
    provider: str | None = None
    #: Tenant id sent in the provider's tenant header (IIO: `X-IIO-Tenant`) on every upstream request.
    tenant: str | None = Field(default=None, validation_alias=AliasChoices("IOINTELLIGENCE_TENANT", "tenant"))
    #: Token limits the caller states for models iorag has no figures for (or lower ones).
    context_length: int | None = Field(default=None, ge=256)
    embedding_limit: int | None = Field(default=None, ge=16)
    index_dir: Path = Path(".iorag")
    #: None: the index's own model, else the default for the mode (remote or offline).
    embedding_model: str | None = None
    chat_model: str | None = None
    #: Chunk size in tokens; None: the embedding model's limit, capped for retrieval quality.
    chunk_tokens: int | None = Field(default=None, ge=16)
    chunk_overlap: int = Field(default=0, ge=0)
    top_k: int = Field(default=8, ge=1, le=1000)
    #: `hybrid` (dense + BM25, fused), `dense` or `lexical`.
    search_mode: str = "hybrid"
    # Remote API tuning.
    embed_batch_items: int = Field(default=128, ge=1)
    embed_batch_tokens: int | None = Field(default=None, ge=1)
    concurrency: int = Field(default=4, ge=1, le=64)
    request_timeout: float = Field(default=60.0, gt=0)
    max_retries: int = Field(default=6, ge=0)
    #: Seconds to keep waiting for an exhausted quota to refresh (0: stop at once, exit status 3).
    quota_wait: float = Field(default=0.0, ge=0)
    #: First backoff ceiling in seconds after a 429/5xx without Retry-After (doubles per retry).
    backoff_base: float = Field(default=0.5, ge=0)
    #: Seconds between checks for a newer index version while serving.
    reload_interval: float = Field(default=2.0, ge=0)
    #: Where new snapshots keep their vectors: `faiss` or `milvus` (needs iorag[milvus]);
    #: None keeps the index's current backend (FAISS for a new index).
    #: Reading follows each snapshot's manifest, whatever this says.
    vector_backend: str | None = None
    #: Milvus Lite file (`.db`) or server URI (`http://host:19530`); None: `<index_dir>/milvus.db`.
    milvus_uri: str | None = None
    #: A Milvus server's credentials, `user:password` or an API key; never stored or logged.
    milvus_token: SecretStr | None = None

    # -- service access (keys, collections, limits, observability) --
    #: The collection (isolated index) to use; `default` is `index_dir` itself, others live in
    #: `<index_dir>/collections/NAME`. The server takes it per request from `X-Collection`.
    collection: str = "default"
    #: API keys (hashes only); None: `<index_dir>/keys.json`.
    keys_file: Path | None = None
    #: Serve on a non-loopback address without keys (anyone who reaches the port may write).
    insecure: bool = False
    #: Largest request body in bytes; uploads (`/v1/files`) have their own cap.
    max_body_bytes: int = Field(default=1 << 20, ge=1024)
    max_upload_bytes: int = Field(default=64 << 20, ge=1024)
    #: Requests per minute per key (per client address on a keyless --insecure server); 0: no limit.
    rate_limit: int = Field(default=600, ge=0)
    #: Requests served at once; beyond it, 503 with Retry-After.
    max_concurrency: int = Field(default=64, ge=1)
    #: Chat models HTTP callers may name, comma-separated; None: any model.
    allowed_models: str | None = None
    #: Most completion tokens an HTTP caller may ask for.
    max_completion_tokens: int = Field(default=4096, ge=1)
    #: Seconds `/v1/models` answers from its cache before asking the API again.
    models_ttl: float = Field(default=300.0, ge=0)
    #: Seconds a client has to send its request headers, and to start another request on a kept-alive connection.
    header_timeout: float = Field(default=10.0, gt=0)
    keep_alive_timeout: float = Field(default=5.0, gt=0)
    #: `text` or `json` (one JSON object per line, with the request id).
    log_format: str = "text"

    @field_validator("api_key", mode="before")
    @classmethod
    def _empty_key_is_none(cls, value: object) -> object:
        # An exported but empty variable means "no key", not "an empty key".
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("search_mode")
    @classmethod
    def _known_mode(cls, value: str) -> str:
        if value not in ("hybrid", "dense", "lexical"):
            raise ValueError("search_mode must be hybrid, dense or lexical")
        return value

    @field_validator("vector_backend")
    @classmethod
    def _known_backend(cls, value: str | None) -> str | None:
        if value is not None and value not in ("faiss", "milvus"):
            raise ValueError("vector_backend must be faiss or milvus")
        return value

    @field_validator("milvus_uri", "milvus_token", "tenant", "provider", mode="before")
    @classmethod
    def _empty_uri_is_none(cls, value: object) -> object:
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("collection")
    @classmethod
    def _collection_name(cls, value: str) -> str:
        from indexer.errors import ConfigError

        from .collections import check_name

        try:
            return check_name(value)
        except ConfigError as exc:
            raise ValueError(f"{exc} ({exc.hint})") from None

    @field_validator("log_format")
    @classmethod
    def _known_log_format(cls, value: str) -> str:
        if value not in ("text", "json"):
            raise ValueError("log_format must be text or json")
        return value

    @property
    def index_path(self) -> Path:
        """The directory of the chosen collection's index."""
        from .collections import collection_dir

        return collection_dir(self.index_dir, self.collection)

    def for_collection(self, name: str) -> "Settings":
        """These settings for another collection (the name is checked)."""
        from .collections import check_name

        return self.model_copy(update={"collection": check_name(name)})

    def allowed_model_ids(self) -> frozenset[str] | None:
        """The chat models HTTP callers may name; None: any."""
        if self.allowed_models is None:
            return None
        names = frozenset(n.strip() for n in self.allowed_models.split(",") if n.strip())
        return names or None

    @property
    def keys_path(self) -> Path:
        return self.keys_file or self.index_dir / "keys.json"

    @property
    def remote(self) -> bool:
        """True when an API key is set: IO Intelligence models are the default."""
        return self.api_key is not None

    @property
    def profile(self) -> Provider:
        """The upstream's provider profile (IORAG_PROVIDER, else from the base URL)."""
        return provider_for(self.base_url, self.provider)

    def default_embedding_model(self) -> str:
        if not self.remote:
            return LOCAL_EMBEDDING_MODEL
        return self.profile.default_embedding_model or DEFAULT_REMOTE_EMBEDDING_MODEL

    def resolved_chat_model(self) -> str:
        if self.chat_model:
            return self.chat_model
        if not self.remote:
            return EXTRACTIVE_MODEL
        return self.profile.default_chat_model or DEFAULT_REMOTE_CHAT_MODEL

    def client_config(self) -> ClientConfig:
        """How to reach the upstream API: the one place every API client's configuration is built.

        Raises:
            ConfigError: an unknown provider, or a tenant the provider cannot carry.
        """
        base_url = self.base_url
        if self.provider and "base_url" not in self.model_fields_set:
            base_url = self.profile.default_base_url  # the named provider's own URL, not io.net's
        return ClientConfig(
            api_key=self.api_key.get_secret_value() if self.api_key else None,
            base_url=base_url,
            provider=self.provider,
            tenant=self.tenant,
            concurrency=self.concurrency,
            timeout=self.request_timeout,
            max_retries=self.max_retries,
            quota_wait=self.quota_wait,
            backoff_base=self.backoff_base,
            batch_items=self.embed_batch_items,
            batch_tokens=self.embed_batch_tokens,
        )

    #: The former name of `client_config`.
    remote_options = client_config

    def milvus_secret(self) -> str | None:
        """The Milvus token in clear, for the one call that connects with it."""
        return self.milvus_token.get_secret_value() if self.milvus_token else None

    def __repr_args__(self):  # type: ignore[no-untyped-def]
        # SecretStr already masks the keys; keep reprs short too.
        return [(k, v) for k, v in super().__repr_args__() if k not in ("api_key", "milvus_token")]
