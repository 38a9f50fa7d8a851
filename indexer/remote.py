"""RemoteEmbedder: the Embedder protocol over the IO Intelligence /embeddings endpoint.

Documents are wrapped in the model's document template (nomic-embed-text:
`search_document: `), queries in its query template. Inputs are counted, template
included, with the model's counter before anything is sent: an input over the
model's limit is refused (that is a chunker bug), and nothing relies
on server-side truncation (`truncate_prompt_tokens` is never sent). Where the
counter is an estimate (bge-multilingual-gemma2: cl100k x 1.15), the server
may still count more and answer 400; the embedder then bisects the batch to
find the input(s) it refused, embeds each in two halves cut near the middle
at a sentence or word boundary, and uses the normalized mean of the halves.
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np

from .api import IOIntelligenceClient
from .catalog import ModelInfo
from .embedding import Vectors, normalize, plan_batches
from .errors import ConfigError, ContextLengthError, EmbeddingError
from .text import sentence_spans
from .tokens import counter_for

log = logging.getLogger(__name__)

#: Token budget of one request, at most. 32,768 is 8 full-length chunks for
#: bge-multilingual-gemma2 (4,096) and the 32-chunk cap below gives 16,384 for
#: mxbai-embed-large-v1 (512). It bounds the work one request asks of the GPU
#: (seconds, far under the 60 s timeout), what a 429/5xx retry resends, and the
#: response (128 x 3,584 float32 = 1.8 MB, 2.4 MB as base64), while typical
#: chunks of a few hundred tokens still fill 30-100 inputs per request.
MAX_BATCH_TOKENS_CAP = 32_768
#: A batch holds up to this many full-length inputs before the cap applies.
FULL_INPUTS_PER_BATCH = 32
#: Most inputs in one request by default.
DEFAULT_BATCH_ITEMS = 128
#: How many times one input may be halved again before giving up.
MAX_SPLIT_DEPTH = 6

_SPACE = re.compile(r"\s+")


def default_batch_tokens(model: ModelInfo) -> int:
    """Token budget of one request for `model` (see MAX_BATCH_TOKENS_CAP)."""
    limit = model.embedding_limit or 512
    return max(limit, min(MAX_BATCH_TOKENS_CAP, FULL_INPUTS_PER_BATCH * limit))


def default_batch_limits(model: ModelInfo) -> tuple[int, int]:
    """(max_batch_items, max_batch_tokens) a RemoteEmbedder uses for `model` by default."""
    return DEFAULT_BATCH_ITEMS, default_batch_tokens(model)


def split_near_middle(text: str) -> tuple[str, str]:
    """Cut `text` in two near its middle: at a sentence end if one is close, else at whitespace.

    Sentence ends within the middle half of the text are preferred, then the
    whitespace closest to the middle, then the middle character. Either part
    may be empty only for texts of one character.
    """
    middle = len(text) // 2
    window = len(text) // 4

    def best(cuts: list[int], reach: int) -> int | None:
        near = [cut for cut in cuts if abs(cut - middle) <= reach and 0 < cut < len(text)]
        return min(near, key=lambda cut: abs(cut - middle)) if near else None

    cut = best([start for start, _ in sentence_spans(text)], window)
    if cut is None:
        cut = best([m.end() for m in _SPACE.finditer(text)], len(text))
    if cut is None:
        cut = max(1, middle) if len(text) > 1 else middle
    return text[:cut].rstrip(), text[cut:].lstrip()


def _preview(text: str, width: int = 60) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 3] + "..."


@dataclass
class EmbedderStats:
    batches: int = 0  # embed_batch calls
    inputs: int = 0  # documents embedded
    queries: int = 0
    context_errors: int = 0  # 400 context-length answers seen (bisection included)
    split_inputs: int = 0  # inputs embedded as halves because the server counted them too long

    def snapshot(self) -> dict[str, Any]:
        return asdict(self)


class RemoteEmbedder:
    """Embeds with an IO Intelligence model, batched and concurrent.

    Args:
        client: the API client (its adaptive limit caps requests in flight).
        model: an embedding model from the catalog (limit, dims, query template).
        max_batch_items: most inputs in one request.
        max_batch_tokens: most counted tokens in one request; at least the
            model's limit. Default: `default_batch_tokens(model)`.
        concurrency: how many batches the caller should run at once; default
            the client's concurrency.
        dimensions: ask for shorter vectors (only for models that support it).
        owns_client: close the client in `aclose()` (the default); pass False
            when the client is shared, e.g. with a chat answerer.
    """

    def __init__(
        self,
        client: IOIntelligenceClient,
        model: ModelInfo,
        *,
        max_batch_items: int = DEFAULT_BATCH_ITEMS,
        max_batch_tokens: int | None = None,
        concurrency: int | None = None,
        dimensions: int | None = None,
        owns_client: bool = True,
    ) -> None:
        if model.kind != "embedding" or model.embedding_limit is None:
            raise ConfigError(f"{model.id!r} is not an embedding model with a known token limit")
        self.client = client
        self.model = model
        self.counter = counter_for(model)
        self.limit: int = model.embedding_limit
        self.max_batch_items = max_batch_items
        self.max_batch_tokens = max_batch_tokens or default_batch_tokens(model)
        if self.max_batch_items < 1:
            raise ConfigError("max_batch_items must be at least 1")
        if self.max_batch_tokens < self.limit:
            raise ConfigError(
                f"max_batch_tokens ({self.max_batch_tokens}) is below {model.id}'s limit ({self.limit}): "
                "a full-length chunk would not fit in a request"
            )
        self.concurrency = concurrency or client.config.concurrency
        self.dimensions = dimensions
        self.owns_client = owns_client
        self.stats = EmbedderStats()

    def __repr__(self) -> str:
        return f"RemoteEmbedder(model={self.model.id!r}, counter={self.counter.name!r})"

    @property
    def dims(self) -> int | None:
        return self.dimensions or self.model.dims

    async def embed_batch(self, texts: Sequence[str]) -> Vectors:
        """Embed documents as they are; rows L2-normalized float32, in input order.

        A batch within `max_batch_items`/`max_batch_tokens` is one request
        (retries and 400 splits aside); a larger one is grouped with
        `plan_batches` and its requests run concurrently under the client's limit.

        Raises:
            EmbeddingError: an input over the model's limit (nothing is sent),
                or one the server refuses even after splitting.
            ApiError: the API failed (after the client's retries).
        """
        texts = [self.model.format_document(text) for text in texts]
        self.stats.batches += 1
        if not texts:
            return np.zeros((0, self.dims or 0), dtype=np.float32)
        counts = self.counter.count_many(texts)
        for position, (text, tokens) in enumerate(zip(texts, counts)):
            if tokens > self.limit:
                raise EmbeddingError(
                    f"input {position} has {tokens} tokens ({self.counter.name}), over {self.model.id}'s "
                    f"limit of {self.limit}: {_preview(text)!r}",
                    hint="the chunker produced an oversized chunk; this is a bug, please report it",
                )
        groups = plan_batches(counts, self.max_batch_items, self.max_batch_tokens)
        parts = await _gather_or_cancel(self._embed_resilient([texts[i] for i in group]) for group in groups)
        self.stats.inputs += len(texts)
        return normalize(np.vstack(parts))

    async def embed_query(self, text: str) -> Vectors:
        """Embed one search query with the model's query template; shape (dims,)."""
        query = self.model.format_query(text)
        tokens = self.counter.count(query)
        if tokens > self.limit:
            raise EmbeddingError(
                f"question too long: {tokens} tokens, {self.model.id} takes {self.limit}",
                hint="shorten the question",
            )
        try:
            result = await self.client.embeddings(self.model.id, [query], dimensions=self.dimensions)
        except ContextLengthError as exc:
            raise EmbeddingError(
                f"question too long: {exc.requested} tokens as the API counts them, "
                f"{self.model.id} takes {exc.limit}",
                hint="shorten the question",
            ) from exc
        self.stats.queries += 1
        self._check_dims(result.vectors)
        return normalize(result.vectors)[0]

    async def aclose(self) -> None:
        if self.owns_client:
            await self.client.aclose()

    async def _embed_resilient(self, texts: list[str], depth: int = 0) -> np.ndarray:
        """Normalized rows for `texts`; a 400 context-length answer bisects the batch."""
        try:
            result = await self.client.embeddings(self.model.id, texts, dimensions=self.dimensions)
        except ContextLengthError as exc:
            self.stats.context_errors += 1
            if len(texts) == 1:
                return (await self._embed_halves(texts[0], exc, depth))[None, :]
            middle = len(texts) // 2
            halves = await _gather_or_cancel(
                [self._embed_resilient(texts[:middle], depth), self._embed_resilient(texts[middle:], depth)]
            )
            return np.vstack(halves)
        self._check_dims(result.vectors)
        return normalize(result.vectors)

    async def _embed_halves(self, text: str, exc: ContextLengthError, depth: int) -> np.ndarray:
        """One unit vector for a text the server counts as too long: the mean of its halves."""
        first, second = split_near_middle(text)
        if depth >= MAX_SPLIT_DEPTH or not first or not second:
            raise EmbeddingError(
                f"{self.model.id} refuses an input even after splitting it {depth} times "
                f"({exc.requested} tokens > {exc.limit}): {_preview(text)!r}"
            ) from exc
        if depth == 0:
            self.stats.split_inputs += 1
            log.warning(
                "%s counts %s tokens (limit %s) for an input %s put at %d; embedding it as two halves: %r",
                self.model.id,
                exc.requested,
                exc.limit,
                self.counter.name,
                self.counter.count(text),
                _preview(text),
            )
        rows = await self._embed_resilient([first, second], depth + 1)
        return normalize(rows.mean(axis=0))

    def _check_dims(self, vectors: np.ndarray) -> None:
        expected = self.dims
        if expected and vectors.shape[1] != expected:
            raise EmbeddingError(
                f"{self.model.id} returned {vectors.shape[1]}-dimensional vectors, expected {expected}"
            )


async def _gather_or_cancel(awaitables: Any) -> list[Any]:
    """Results of all `awaitables` in order; on the first failure the rest are cancelled
    and that failure is raised as is (not wrapped in an ExceptionGroup)."""
    tasks = [asyncio.ensure_future(a) for a in awaitables]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


__all__ = [
    "DEFAULT_BATCH_ITEMS",
    "EmbedderStats",
    "RemoteEmbedder",
    "default_batch_limits",
    "default_batch_tokens",
    "split_near_middle",
]
