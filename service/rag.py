"""RagService: search and ask over an index, in-process, sync and async.

The service answers from one published snapshot at a time and switches to a
newer one when the index directory's CURRENT changes (checked at most every
`reload_interval` seconds), so `iorag serve` picks up a finished indexing run
without a restart and never sees a half-written index.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from pathlib import Path
from dataclasses import replace
from functools import partial
from typing import Any, AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence

from indexer.api import CircuitBreaker
from indexer.catalog import EXTRACTIVE_MODEL, Catalog, ModelInfo, default_catalog
from indexer.embedders import LazyEmbedder, make_embedder
from indexer.embedding import Embedder
from indexer.api import Usage
from indexer.errors import (
    ApiError,
    AuthenticationError,
    ConfigError,
    DimensionMismatchError,
    IndexNotFoundError,
    IoragError,
    PaymentRequiredError,
    QuotaExhaustedError,
)
from indexer.models import Document, ScoredChunk
from indexer.pipeline import Indexer, IndexReport
from indexer.sources import SourceProblem, read_uploads
from indexer.store import DocumentSummary, IndexDirectory
from indexer.tokens import counter_for
from indexer.sync_calls import refuse_inside_event_loop

from .answer import Answer, AnswerEvent, ChatAnswerer, answer_extractively, stream_pieces
from .config import Settings
from .conversation import REWRITE_MAX_TOKENS, Turn, as_turns, clean_rewrite, rewrite_messages, standalone_offline
from .embeddings import Embeddings, embed_texts
from .errors import DocumentConflictError, QueryError
from .indexing import build_indexer
from .prompting import budget_for
from .loop_thread import LoopThread
from .retrieval import WARM_SECONDS, Mode, Retriever
from .warming import WarmingProcess

log = logging.getLogger("iorag.service")

#: Called once per chat call to the API: (model, error type or None, prompt tokens, completion tokens).
UpstreamHook = Callable[[str, "str | None", int, int], None]
#: Who writes, as a refused `iorag index` is told.
SERVER_HOLDER = "the iorag server (a write over HTTP)"

#: Longest question accepted, in characters (before any token check).
MAX_QUESTION_CHARS = 20_000


class RagService:
    """Search and question answering over the index in `settings.index_dir`.

    Use the async methods (`asearch`, `aask`, ...) from async code and the
    sync ones (`search`, `ask`, ...) elsewhere; one instance serves one of the
    two styles, because its HTTP connections belong to one event loop. The sync
    methods run on the service's own event loop thread (`LoopThread`), started
    by the first sync call and stopped by `close()`, by garbage collection or at
    exit; called inside a running event loop they raise a ConfigError naming
    their async twin.
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        embedder: Embedder | None = None,
        catalog: Catalog | None = None,
    ) -> None:
        self.settings = settings or Settings()
        self.catalog = catalog or default_catalog()
        self.directory = IndexDirectory(self.settings.index_path, milvus_token=self.settings.milvus_secret())
        self._embedder = embedder
        self._retriever: Retriever | None = None
        self._retired: Retriever | None = None
        self._snapshot_id: str | None = None
        self._checked_at = 0.0
        self._reload_lock = asyncio.Lock()
        self._write_lock = asyncio.Lock()
        self._models_lock = asyncio.Lock()
        self._api_models_merged = False
        self._client: Any = None
        self._answerer: ChatAnswerer | None = None
        #: One breaker for every client of the upstream this service builds, so health can report it.
        self.breaker = CircuitBreaker()
        #: Told about every chat call to the API (the server's metrics).
        self.on_upstream: UpstreamHook | None = None
        # Query-vector cache counts of retrievers already replaced (the live one adds its own).
        self._cache_base = {"hits": 0, "misses": 0}
        # The sync methods' event loop; one per service, started by the first sync call.
        self._loop_thread: LoopThread | None = None
        self._loop_lock = threading.Lock()
        # Answers a new generation's warm-up searches; its child process starts with the first one.
        self._warming = WarmingProcess()

    # -- snapshot handling ------------------------------------------------------

    async def retriever(self) -> Retriever:
        """The retriever over the newest published snapshot.

        Raises:
            IndexNotFoundError: nothing indexed yet.
        """
        now = time.monotonic()
        if self._retriever is not None and (
            now - self._checked_at < self.settings.reload_interval or self._reload_lock.locked()
        ):
            # While a newer generation is being opened, the current one keeps answering.
            return self._retriever
        await self._reload()
        assert self._retriever is not None
        return self._retriever

    async def _reload(self) -> None:
        """Switch to the published generation if it is not the one loaded."""
        async with self._reload_lock:
            self._checked_at = time.monotonic()
            current_id = self.directory.current_version()
            if current_id is None:
                raise IndexNotFoundError(
                    f"there is no index at {self.directory.root}",
                    hint=f"make one with `iorag index PATH --index {self.directory.root}`",
                )
            if self._retriever is None or current_id != self._snapshot_id:
                await self._load()

    async def _load(self) -> None:
        snapshot = await asyncio.to_thread(self.directory.open_current)
        embedder = self._embedder_for(snapshot.manifest.embedding_model)
        previous = self._retriever
        # Query vectors and the searches in vogue outlive a generation (each write publishes one):
        # keep them for the same embedder.
        kept = previous if previous is not None and previous.embedder is embedder else None
        retriever = await asyncio.to_thread(partial(
            Retriever, snapshot, embedder,
            query_vectors=kept.query_vectors if kept else None, repeated=kept.repeated if kept else None,
        ))
        plan = kept.warm_plan() if kept else []
        if plan:
            # Searches keep going to the previous generation while this one answers the repeated ones,
            # in the warm-up process where it can open the generation (the GIL stays the loop's).
            try:
                if self._warming.can_rank(snapshot):
                    ranked = await self._warming.rank(snapshot, plan, WARM_SECONDS)
                    await asyncio.to_thread(retriever.install, ranked)
                else:
                    await asyncio.to_thread(retriever.warm, plan)
            except IoragError as exc:
                log.warning("warming the new generation's search cache failed (%s)", exc)
        # Keep the previous snapshot open one more round: searches may still be using it.
        if self._retired is not None:
            self._retired.retire()
        if previous is not None:
            self._cache_base["hits"] += previous.cache_hits
            self._cache_base["misses"] += previous.cache_misses
        self._retired = previous
        self._retriever = retriever
        self._snapshot_id = snapshot.manifest.version

    def _embedder_for(self, model_id: str) -> Embedder:
        wanted = self.settings.embedding_model
        if wanted and wanted != model_id:
            raise DimensionMismatchError(
                f"the index at {self.directory.root} was built with {model_id}, "
                f"but the embedding model is set to {wanted}",
                hint=f"reindex with --embedding-model {wanted}, or unset IORAG_EMBEDDING_MODEL",
            )
        if self._embedder is None or self._embedder.model.id != model_id:
            # Built on first use: lexical search needs no embedder (nor an API key for a remote model).
            limit = self.settings.embedding_limit
            build = partial(
                make_embedder, model_id, self.settings.client_config(), self.catalog,
                limit=limit, **self._client_options(model_id),
            )
            embedder: Embedder = LazyEmbedder(self.catalog.resolve(model_id, "embedding", limit), build)
            self._embedder = embedder
            return embedder
        return self._embedder

    # -- reading ---------------------------------------------------------------

    async def asearch(self, query: str, top_k: int | None = None, mode: Mode | None = None) -> list[ScoredChunk]:
        """The best chunks for `query`."""
        query = _checked_text(query, "query")
        retriever = await self.retriever()
        return await retriever.search(query, top_k or self.settings.top_k, mode or self.settings.search_mode)  # type: ignore[arg-type]

    def chat_model(self, model_id: str | None = None) -> ModelInfo | None:
        """The chat model to answer with; None for the extractive answer."""
        model_id = model_id or self.settings.resolved_chat_model()
        if model_id == EXTRACTIVE_MODEL:
            return None
        model = self.catalog.resolve(model_id, "chat", self.settings.context_length)
        if not self.settings.remote:
            raise ConfigError(
                f"{model_id} runs on IO Intelligence and needs an API key",
                hint="set IOINTELLIGENCE_API_KEY, or ask with --model extractive",
            )
        return model

    async def achat_model(self, model_id: str | None = None) -> ModelInfo | None:
        """Like `chat_model`, but a remote model the built-in catalog lacks is looked up
        in the API's /models (once per service) before it is called unknown."""
        wanted = model_id or self.settings.resolved_chat_model()
        if self.settings.remote and wanted != EXTRACTIVE_MODEL and wanted not in self.catalog:
            await self._merge_api_models()
        return self.chat_model(model_id)

    async def _merge_api_models(self) -> None:
        async with self._models_lock:
            if not self._api_models_merged:
                self.catalog = self.catalog.merged(await self._chat().client.list_models())
                self._api_models_merged = True

    def _chat(self) -> ChatAnswerer:
        if self._answerer is None:
            self._client = self.settings.client_config().make_client(breaker=self.breaker)
            self._answerer = ChatAnswerer(self._client)
        return self._answerer

    async def aask(
        self,
        question: str,
        *,
        history: Iterable[Turn | Mapping[str, Any]] | None = None,
        model: str | None = None,
        top_k: int | None = None,
        max_completion_tokens: int | None = None,
    ) -> Answer:
        """Retrieve context for `question` and answer it with sources.

        Args:
            history: earlier turns of the conversation, oldest first (`Turn`s or
                `{"role": "user"|"assistant", "content"}`). A follow-up is made to
                stand alone before retrieval (`Answer.query`), and the turns go into
                the chat prompt as far as its budget allows.
        """
        question = _checked_text(question, "question")
        turns = as_turns(history)
        chat_model = await self.achat_model(model)
        query, spent = await self._standalone(question, turns, chat_model)
        ranked = await self.asearch(query, top_k)
        if chat_model is None:
            answer = answer_extractively(query, ranked)
            return _with_query(answer, query, spent)
        try:
            answer = await self._chat().answer(
                question, ranked, chat_model, max_completion_tokens=max_completion_tokens, history=_messages(turns)
            )
        except ApiError as exc:
            self._observe(chat_model.id, type(exc).__name__)
            raise
        answer = _with_query(answer, query, spent)
        self._observe(chat_model.id, None, answer)
        return answer

    def _observe(self, model: str, error: str | None, answer: Answer | None = None) -> None:
        if self.on_upstream is not None:
            usage = answer.usage if answer is not None else None
            self.on_upstream(model, error, usage.prompt_tokens if usage else 0, usage.completion_tokens if usage else 0)

    def cache_stats(self) -> dict[str, int]:
        """Query vectors served from the cache (`hits`) and embedded (`misses`) so far."""
        live = self._retriever
        return {
            "hits": self._cache_base["hits"] + (live.cache_hits if live else 0),
            "misses": self._cache_base["misses"] + (live.cache_misses if live else 0),
        }

    async def aask_stream(
        self,
        question: str,
        *,
        history: Iterable[Turn | Mapping[str, Any]] | None = None,
        model: str | None = None,
        top_k: int | None = None,
        max_completion_tokens: int | None = None,
    ) -> AsyncIterator[AnswerEvent]:
        """Like `aask`, yielding text deltas as they arrive and the full answer last.

        The extractive answer exists whole at once; it is still sent in word-sized
        deltas, so that clients see the same stream either way.
        """
        question = _checked_text(question, "question")
        turns = as_turns(history)
        chat_model = await self.achat_model(model)
        query, spent = await self._standalone(question, turns, chat_model)
        ranked = await self.asearch(query, top_k)
        if chat_model is None:
            answer = answer_extractively(query, ranked)
            for piece in stream_pieces(answer.answer):
                yield AnswerEvent(delta=piece)
            yield AnswerEvent(answer=_with_query(answer, query, spent))
            return
        try:
            async for event in self._chat().stream(
                question, ranked, chat_model, max_completion_tokens=max_completion_tokens, history=_messages(turns)
            ):
                if event.answer is None:
                    yield event
                    continue
                answer = _with_query(event.answer, query, spent)
                self._observe(chat_model.id, None, answer)
                yield AnswerEvent(answer=answer)
        except ApiError as exc:
            self._observe(chat_model.id, type(exc).__name__)
            raise

    async def _standalone(self, question: str, turns: list[Turn], chat_model: ModelInfo | None) -> tuple[str, Usage]:
        """The question to search for: the follow-up rewritten to stand alone, and what rewriting cost."""
        if not any(turn.role == "user" for turn in turns):
            return question, Usage()
        if chat_model is not None:
            rewritten, usage = await self._rewrite(question, turns, chat_model)
            if rewritten:
                return rewritten, usage
        else:
            usage = Usage()
        return await self._standalone_offline(question, turns), usage

    async def _rewrite(self, question: str, turns: list[Turn], model: ModelInfo) -> tuple[str | None, Usage]:
        """Ask the chat model for the standalone question, inside its budget; None on any failure
        but those the answer itself would meet too (key, quota, tier)."""
        answerer = self._chat()
        try:
            budget = budget_for(
                model, max_completion_tokens=REWRITE_MAX_TOKENS, margin_ratio=answerer.tracker.margin_ratio(model.id)
            )
            messages = rewrite_messages(question, turns, counter_for(model), budget)
            if messages is None:
                return None, Usage()
            text, usage = await answerer.complete(model, messages, budget.max_completion_tokens)
        except (AuthenticationError, QuotaExhaustedError, PaymentRequiredError):
            raise
        except IoragError as exc:
            log.warning("rewriting a follow-up with %s failed (%s); using the earlier questions' words", model.id, exc)
            return None, Usage()
        return clean_rewrite(text, question), usage

    async def _standalone_offline(self, question: str, turns: list[Turn]) -> str:
        """`standalone_offline`, with as many added words as the embedding model's query limit allows."""
        retriever = await self.retriever()
        embedder, rarity = retriever.embedder, retriever.lexical.rarity
        limit = embedder.model.embedding_limit
        query = standalone_offline(question, turns, rarity=rarity)
        most = len(query.split()) - len(question.split())
        while most > 0 and limit is not None and embedder.counter.count(embedder.model.format_query(query)) > limit:
            most -= 1
            query = standalone_offline(question, turns, most, rarity)
        return query

    async def aembed(self, texts: Sequence[str]) -> Embeddings:
        """Embed `texts` as documents with the index's embedding model (see `embed_texts`).

        Raises:
            IndexNotFoundError: nothing indexed yet, so no embedding model is chosen.
            QueryError: an input is empty or over the model's limit, or there are too many.
        """
        retriever = await self.retriever()
        return await embed_texts(retriever.embedder, texts)

    async def alist_documents(self, offset: int = 0, limit: int = 50) -> tuple[list[DocumentSummary], int]:
        """One page of the indexed documents (publishing order) and the total; empty before any index."""
        try:
            retriever = await self.retriever()
        except IndexNotFoundError:
            return [], 0
        return await asyncio.to_thread(retriever.snapshot.list_documents, offset, limit)

    def _client_options(self, model_id: str) -> dict[str, Any]:
        """Options for an API client of this service: the shared breaker (remote models only)."""
        known = model_id in self.catalog and self.catalog.get(model_id).provider == "local"
        return {} if known else {"breaker": self.breaker}

    def upstream_state(self) -> str:
        """`up`, `down` (the circuit breaker is open) or `off` (offline: no upstream)."""
        if not self.settings.remote:
            return "off"
        return "up" if self.breaker.state == "closed" else "down"

    async def ahealth(self) -> dict[str, Any]:
        """Index status for `/v1/health`."""
        info: dict[str, Any] = {
            "status": "ok",
            "index_dir": str(self.directory.root),
            "mode": "remote" if self.settings.remote else "offline",
            "chat_model": self.settings.resolved_chat_model(),
        }
        try:
            retriever = await self.retriever()
        except IndexNotFoundError:
            info.update(status="empty", documents=0, chunks=0, embedding_model=None, snapshot=None)
            return info
        manifest = retriever.snapshot.manifest
        info.update(
            documents=manifest.documents,
            chunks=manifest.chunks,
            embedding_model=manifest.embedding_model,
            dims=manifest.dims,
            snapshot=manifest.snapshot,
            created_at=manifest.created_at,
        )
        return info

    # -- writing ---------------------------------------------------------------

    def _indexer(self) -> Indexer:
        # Writes embed with the service's embedder whenever the index uses its model, even when
        # the retriever is behind (back-to-back writes): one given to RagService may be the only
        # way to embed with that model, and a new one would load or connect all over again.
        manifest = self.directory.current_manifest()
        embedder = self._embedder
        if embedder is None or manifest is None or manifest.embedding_model != embedder.model.id:
            embedder = None
        return build_indexer(self.settings, embedder=embedder, catalog=self.catalog, holder=SERVER_HOLDER)

    async def aadd_documents(self, documents: Sequence[Document], *, replace_files: bool = True) -> IndexReport:
        """Add or replace documents by id; searches see them when this returns.

        Args:
            replace_files: whether a document may replace one indexed from a file
                (the HTTP API says False unless the caller asks).

        Raises:
            DocumentConflictError: `replace_files` is False and an id belongs to a file's document.
        """

        async def change(indexer: Indexer) -> IndexReport:
            if not replace_files:
                await asyncio.to_thread(self._refuse_file_ids, [d.id for d in documents])
            return await indexer.aadd_documents(documents)

        return await self._write(change)

    def _refuse_file_ids(self, doc_ids: Sequence[str]) -> None:
        if not self.directory.exists():
            return
        # The listing of these ids alone: no vectors, no texts (a write must not cost the index's size).
        with self.directory.open_current(dense=False) as snapshot:
            records = snapshot.entries(doc_ids)
        # `iorag index` records the file's absolute path; HTTP adds say "api" and uploads their bare name.
        taken = [i for i in doc_ids if i in records and Path(records[i].source).is_absolute()]
        if taken:
            shown = ", ".join(repr(i) for i in taken[:5]) + (" ..." if len(taken) > 5 else "")
            raise DocumentConflictError(
                f"{len(taken)} document id(s) belong to documents indexed from files: {shown}",
                hint='send "replace": true to replace them anyway',
            )

    async def aindex_files(
        self, files: Sequence[tuple[str, bytes]], *, replace_files: bool = True
    ) -> tuple[IndexReport | None, list[str], list[SourceProblem]]:
        """Parse uploaded files (name, bytes) with the CLI's readers and add what they hold.

        Args:
            replace_files: as for `aadd_documents` (an upload named like a document
                `iorag index` read from disk replaces it only when True).

        Returns:
            The write's report (None when no file yielded a document), the ids of the
            documents indexed, and the problems (files or parts of files not indexed).
        """
        scanned = await asyncio.to_thread(read_uploads, files)
        if not scanned.documents:
            return None, [], scanned.problems
        report = await self.aadd_documents(scanned.documents, replace_files=replace_files)
        ids = [d.id for d in scanned.documents if d.id in report.document_chunks]
        return report, ids, scanned.problems + report.problems

    async def adelete_documents(self, doc_ids: Sequence[str]) -> IndexReport:
        """Remove documents by id; `report.missing_ids` lists ids that were not there."""
        return await self._write(lambda indexer: indexer.adelete_documents(doc_ids))

    async def _write(self, change: Callable[[Indexer], Awaitable[IndexReport]]) -> IndexReport:
        """Run one change through a fresh Indexer, one at a time; the next read reloads."""
        async with self._write_lock:
            indexer = self._indexer()
            try:
                report = await change(indexer)
            finally:
                await indexer.aclose()
        # Open what was published before answering, so the writer's next search sees it and no
        # search waits for the opening: until it is open, the previous generation answers.
        self._checked_at = 0.0
        try:
            await self._reload()
        except Exception as exc:  # the write is published: the next search reports what stops reading it
            log.warning("opening the index after a write failed (%s); the next search tries again", exc)
            self._checked_at = 0.0
        return report

    # -- sync facade -------------------------------------------------------------

    def _call(self, name: str, func: Any, *args: Any, **kwargs: Any) -> Any:
        """Run `await func(...)` on this service's own event loop thread (started on first use)."""
        refuse_inside_event_loop(f"RagService.{name}", f"RagService.a{name}")
        with self._loop_lock:
            if self._loop_thread is None:
                self._loop_thread = LoopThread(name="iorag-rag-loop")
            loop_thread = self._loop_thread
        return loop_thread.run(lambda: func(*args, **kwargs))

    def search(self, query: str, top_k: int | None = None, mode: Mode | None = None) -> list[ScoredChunk]:
        return self._call("search", self.asearch, query, top_k, mode)  # type: ignore[no-any-return]

    def ask(self, question: str, *, history: Iterable[Turn | Mapping[str, Any]] | None = None, **kwargs: Any) -> Answer:
        return self._call("ask", self.aask, question, history=history, **kwargs)  # type: ignore[no-any-return]

    def embed(self, texts: Sequence[str]) -> Embeddings:
        return self._call("embed", self.aembed, texts)  # type: ignore[no-any-return]

    def health(self) -> dict[str, Any]:
        return self._call("health", self.ahealth)  # type: ignore[no-any-return]

    def add_documents(self, documents: Sequence[Document]) -> IndexReport:
        return self._call("add_documents", self.aadd_documents, documents)  # type: ignore[no-any-return]

    def delete_documents(self, doc_ids: Sequence[str]) -> IndexReport:
        return self._call("delete_documents", self.adelete_documents, doc_ids)  # type: ignore[no-any-return]

    # -- lifetime -----------------------------------------------------------------

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
            self._answerer = None
        if self._embedder is not None:
            await self._embedder.aclose()
        for retriever in (self._retired, self._retriever):
            if retriever is not None:
                retriever.snapshot.close()
        self._retriever = self._retired = None
        await asyncio.to_thread(self._warming.close)

    def close(self) -> None:
        """Release connections and snapshots, and stop the sync calls' event loop thread."""
        refuse_inside_event_loop("RagService.close", "RagService.aclose")
        with self._loop_lock:
            loop_thread, self._loop_thread = self._loop_thread, None
        if loop_thread is None:
            asyncio.run(self.aclose())
            return
        try:
            loop_thread.run(self.aclose)
        finally:
            loop_thread.stop()

    def __enter__(self) -> "RagService":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> "RagService":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def _messages(turns: Sequence[Turn]) -> list[dict[str, str]]:
    return [{"role": turn.role, "content": turn.content} for turn in turns]


def _with_query(answer: Answer, query: str, spent: Usage) -> Answer:
    """The answer with the question it searched for, and the rewrite call's tokens in its usage."""
    usage = Usage(
        prompt_tokens=answer.usage.prompt_tokens + spent.prompt_tokens,
        completion_tokens=answer.usage.completion_tokens + spent.completion_tokens,
    )
    return replace(answer, query=query, usage=usage)


def _checked_text(text: str, what: str) -> str:
    text = (text or "").strip()
    if not text:
        raise QueryError(f"the {what} is empty")
    if len(text) > MAX_QUESTION_CHARS:
        raise QueryError(f"the {what} is {len(text)} characters; the most accepted is {MAX_QUESTION_CHARS}")
    return text
