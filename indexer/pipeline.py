"""Indexer: sources -> chunks -> embeddings -> a published generation, incremental and resumable.

A run looks up only the documents it is given (by id) and writes only what
changed: new or edited documents are chunked, their chunks' vectors taken from
the embedding cache (embedding only what it lacks), and published as one new
generation that tombstones what they replace. A directory scan also needs to
know which documents are gone; it reads the cheap listing of ids, sources and
content hashes, never every chunk. The whole index is planned and rewritten
only for a first build, a new embedding model or chunking, or a move to another
vector backend. Vectors are committed to the cache batch by batch as they
arrive, so a crash, Ctrl-C or exhausted quota loses at most the batches in
flight. Publishing is atomic: readers see either the old index or the new one.
CPU-heavy steps run in worker threads, so an event loop serving reads is never stalled.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Awaitable, Callable, Iterable, Sequence

import numpy as np

from .catalog import LOCAL_EMBEDDING_MODEL, Catalog, ModelInfo, default_catalog
from .chunking import ChunkingConfig, chunk_document
from .embedders import RemoteOptions, make_embedder
from .embedding import Embedder, plan_batches
from .errors import ConfigError, IoragError, QuotaExhaustedError, SourceError
from .models import Chunk, Document, sha256_hex
from .sources import SUPPORTED_SUFFIXES, SourceProblem, in_scope, scan
from .store import DocumentEntry, DocumentRecord, EmbeddingCache, IndexDirectory, Manifest, Snapshot
from .store.dense.faiss import ANN_MIN_ROWS
from .store.writer import IndexWriter
from .store.backends import DenseTarget, resolve_uri
from .sync_calls import refuse_inside_event_loop
from .tokens import TokenCounter, counter_for

#: Bump when chunking changes in a way that changes chunk boundaries.
CHUNKER_VERSION = 2
#: Default chunk size cap: long chunks blur retrieval and crowd prompts.
DEFAULT_CHUNK_TOKENS = 512

#: Called with (chunks embedded so far, chunks to embed in this run).
ProgressFn = Callable[[int, int], None]
#: Called with (stage, done, total) through a run: "scanning" (files read; total 0: not known
#: ahead), "chunking" (characters of new or changed text cut), "embedding" (chunks embedded).
StageFn = Callable[[str, int, int], None]


@dataclass
class IndexReport:
    """What a run did (or, for a dry run, would do)."""

    embedding_model: str
    dry_run: bool = False
    documents: int = 0
    chunks: int = 0
    added: int = 0
    updated: int = 0
    removed: int = 0
    unchanged: int = 0
    #: Chunks whose vectors the cache already had.
    cached_chunks: int = 0
    chunks_to_embed: int = 0
    tokens_to_embed: int = 0
    requests_planned: int = 0
    chunks_embedded: int = 0
    tokens_embedded: int = 0
    #: The model's documented free tokens a day, when known (for dry runs).
    daily_quota_tokens: int | None = None
    problems: list[SourceProblem] = field(default_factory=list)
    #: Files of types no reader handles, found in directories: count by suffix (`{".bin": 2}`).
    unsupported: dict[str, int] = field(default_factory=dict)
    #: Chunks of each document read in this run, by id (documents that yielded no chunk are absent).
    document_chunks: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    snapshot: str | None = None
    published: bool = False
    missing_ids: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One line for people."""
        verb = "would embed" if self.dry_run else "embedded"
        done = self.chunks_to_embed if self.dry_run else self.chunks_embedded
        tokens = self.tokens_to_embed if self.dry_run else self.tokens_embedded
        line = (
            f"{self.documents} documents, {self.chunks} chunks "
            f"(+{self.added} ~{self.updated} -{self.removed}); {verb} {done} chunks, "
            f"{tokens} tokens in {_plural(self.requests_planned, 'request')}; {self.cached_chunks} from cache; "
            f"{self.seconds:.1f}s"
        )
        if self.problems:
            line += f"; {len(self.problems)} skipped (see above)"
        if self.unsupported:
            kinds = ", ".join(f"{count} {suffix}" for suffix, count in sorted(self.unsupported.items()))
            line += f"; {_plural(sum(self.unsupported.values()), 'file')} of unsupported types not read ({kinds})"
        return line


@dataclass(frozen=True)
class _Plan:
    """The final state a run builds toward."""

    model: ModelInfo
    config: ChunkingConfig
    records: list[DocumentRecord]
    chunks: list[Chunk]
    hashes: list[str]
    report: IndexReport
    changed: bool
    #: True: `records`/`chunks` are the whole new index; False: they are what changes, and
    #: `deletes` the documents to remove.
    full: bool = True
    deletes: tuple[str, ...] = ()
    #: Where a full publish puts the vectors.
    dense: DenseTarget | None = None
    #: Chunks of documents left as they are (an incremental run neither reads nor embeds them).
    kept_chunks: int = 0


@dataclass(frozen=True)
class _Requests:
    """The cache misses in sending order, their token counts, and their grouping into requests."""

    hashes: list[str]
    texts: list[str]
    counts: list[int]
    batches: list[list[int]]


class Indexer:
    """Indexes documents into an index directory.

    Args:
        index_dir: where the index lives (created on first write).
        embedding_model: model to index with. None keeps the index's current
            model, or `default_embedding_model` for a new index. Naming another
            model than the index's builds a new index beside it and switches
            when complete.
        embedder: an embedder to use instead of building one from the model id.
        chunk_tokens: chunk size cap; None: min(model limit, 512).
        overlap: tokens of overlap between neighbouring chunks.
        remote: how to reach the upstream API for remote models.
        progress: called as embeddings arrive.
        on_stage: called through every stage of a run, scanning and chunking included.
        embedding_limit: the model's token limit as the caller states it (a model
            nothing else describes, or a lower limit than the known one).
        on_wait: called with the seconds the API client waits for a rate-limit window.
        dense_backend: where the next snapshot's vectors go: `faiss` (a file in the
            snapshot) or `milvus` (a collection per snapshot; needs iorag[milvus]).
            None keeps the current snapshot's backend (FAISS for a new index).
            Readers follow each snapshot's manifest, so switching needs no reindex.
        milvus_uri: Milvus Lite file (`.db`) or server URI (`http://host:19530`);
            None: `<index_dir>/milvus.db`.
        milvus_token: a Milvus server's credentials (`user:password` or an API key), for
            writing and for reading the current snapshot; never stored.
        ann_min_rows: FAISS vector segments of at least this many rows get an approximate
            (IVF) index; smaller ones are searched exactly.
        holder: who writes, as another writer refused by the lock is told.

    Raises:
        ConfigError: an unknown backend or a Milvus URI that is neither a server nor a `.db` file.
    """

    def __init__(
        self,
        index_dir: str | Path,
        *,
        embedding_model: str | None = None,
        default_embedding_model: str = LOCAL_EMBEDDING_MODEL,
        embedder: Embedder | None = None,
        chunk_tokens: int | None = None,
        overlap: int = 0,
        remote: RemoteOptions | None = None,
        catalog: Catalog | None = None,
        progress: ProgressFn | None = None,
        on_stage: StageFn | None = None,
        dense_backend: str | None = None,
        milvus_uri: str | None = None,
        milvus_token: str | None = None,
        embedding_limit: int | None = None,
        on_wait: Callable[[float], None] | None = None,
        ann_min_rows: int = ANN_MIN_ROWS,
        holder: str = "`iorag index`",
    ) -> None:
        self.directory = IndexDirectory(Path(index_dir), milvus_token=milvus_token)
        self._embedding_limit = embedding_limit
        self._on_wait = on_wait
        self._holder = holder
        # Checked now so a bad choice fails before any work; resolved per run against the index.
        self._dense_choice = DenseTarget(dense_backend or "faiss", milvus_uri)
        self._dense_explicit = dense_backend is not None
        self.catalog = catalog or default_catalog()
        self._explicit_model = embedding_model
        self._default_model = default_embedding_model
        self._embedder = embedder
        # An embedder handed in belongs to the caller; one built here is closed by `aclose`.
        self._owns_embedder = embedder is None
        self._chunk_tokens = chunk_tokens
        self._overlap = overlap
        self._remote = remote
        self._progress = progress
        self._ann_min_rows = ann_min_rows
        self._on_stage = on_stage

    # -- public, sync ---------------------------------------------------------

    def index(self, paths: Sequence[str | Path], *, dry_run: bool = False) -> IndexReport:
        """Index files, directories or globs; documents from these paths whose file is gone are removed.

        Raises:
            ConfigError: called inside a running event loop (await `aindex` there).
        """
        refuse_inside_event_loop("Indexer.index", "Indexer.aindex")
        return asyncio.run(self._in_own_loop(self.aindex(paths, dry_run=dry_run)))

    def add_documents(self, documents: Sequence[Document], *, dry_run: bool = False) -> IndexReport:
        """Add or replace documents by id (in async code, await `aadd_documents`)."""
        refuse_inside_event_loop("Indexer.add_documents", "Indexer.aadd_documents")
        return asyncio.run(self._in_own_loop(self.aadd_documents(documents, dry_run=dry_run)))

    def delete_documents(self, doc_ids: Iterable[str]) -> IndexReport:
        """Remove documents by id; `report.missing_ids` lists ids that were not indexed.

        In async code, await `adelete_documents`.
        """
        refuse_inside_event_loop("Indexer.delete_documents", "Indexer.adelete_documents")
        return asyncio.run(self._in_own_loop(self.adelete_documents(doc_ids)))

    async def _in_own_loop(self, work: Awaitable[IndexReport]) -> IndexReport:
        """Run one sync call's work; an embedder built for it dies with its event loop."""
        try:
            return await work
        finally:
            if self._owns_embedder and self._embedder is not None:
                await self._embedder.aclose()
                self._embedder = None

    # -- public, async --------------------------------------------------------

    async def aindex(self, paths: Sequence[str | Path], *, dry_run: bool = False) -> IndexReport:
        if not paths:
            raise ConfigError("no paths to index", hint="name files, directories or globs")
        started = time.monotonic()
        files_read = 0

        def file_read(path: Path) -> None:
            nonlocal files_read
            files_read += 1
            self._stage("scanning", files_read, 0)

        result = await asyncio.to_thread(scan, list(paths), on_file=file_read)
        scope = list(paths)
        if not result.files:
            self._refuse_nothing_found(scope, result.problems)
        # A file that could not be read keeps its last good version; an emptied one goes.
        troubled = [p.source for p in result.problems if p.reason != "empty document"]

        def removed(current: Snapshot) -> set[str]:
            # The listing (ids, sources, hashes) is enough to tell what left the scanned paths.
            return {
                entry.doc_id for entry in current.listing()
                if entry.source != "api" and in_scope(entry.source, scope)
                and not any(t == entry.source or t.startswith(entry.source + ":") for t in troubled)
            }

        report = await self._run(result.documents, removed, dry_run=dry_run, started=started)
        report.problems = list(result.problems) + report.problems
        report.unsupported = dict(result.unsupported)
        return report

    def _refuse_nothing_found(self, scope: list[str | Path], problems: list[SourceProblem]) -> None:
        """No file to read under the paths: fail naming them rather than publish an empty index.

        Unless the index holds documents from those paths: re-indexing a folder that
        is gone is how its documents are removed.
        """
        current = self._open_current()
        try:
            records = list(current.documents().values()) if current else []
        finally:
            if current is not None:
                current.close()
        if any(r.source != "api" and in_scope(r.source, scope) for r in records):
            return
        if problems:
            raise problems[0].to_error()
        supported = " ".join(SUPPORTED_SUFFIXES)
        raise SourceError(", ".join(map(str, scope)), f"no files to index here (supported: {supported})")

    async def aadd_documents(self, documents: Sequence[Document], *, dry_run: bool = False) -> IndexReport:
        return await self._run(list(documents), lambda current: set(), dry_run=dry_run, started=time.monotonic())

    async def adelete_documents(self, doc_ids: Iterable[str]) -> IndexReport:
        wanted = sorted(set(doc_ids))
        known: set[str] = set()

        def removed(current: Snapshot) -> set[str]:
            known.update(current.entries(wanted))
            return set(known)

        report = await self._run([], removed, dry_run=False, started=time.monotonic())
        report.missing_ids = sorted(set(wanted) - known)
        return report

    async def acompact(self) -> Manifest | None:
        """Rewrite the index without what writes left behind (tombstones, small segments).

        Returns:
            The new generation's manifest; None if there is no index to compact.

        Raises:
            IndexLockedError: another writer holds the index.
        """
        with self.directory.writer(ann_min_rows=self._ann_min_rows) as writer:
            return await asyncio.to_thread(writer.compact)

    def compact(self) -> Manifest | None:
        """Sync twin of `acompact`."""
        return asyncio.run(self.acompact())

    # -- the run --------------------------------------------------------------

    async def _run(
        self,
        incoming: list[Document],
        drop: Callable[[Snapshot], set[str]],
        *,
        dry_run: bool,
        started: float,
    ) -> IndexReport:
        if dry_run:
            current = await asyncio.to_thread(self._open_current)
            try:
                plan = await asyncio.to_thread(self._plan, current, incoming, drop, dry_run=True)
                with self.directory.cache() as cache:
                    missing = cache.missing(plan.model.id, plan.hashes)
                self._account(plan, self._requests(plan, missing))
            finally:
                if current is not None:
                    current.close()
            plan.report.seconds = time.monotonic() - started
            return plan.report

        with self.directory.writer(ann_min_rows=self._ann_min_rows, holder=self._holder) as writer:
            current = await asyncio.to_thread(self._open_current)
            try:
                plan = await asyncio.to_thread(self._plan, current, incoming, drop, dry_run=False)
            finally:
                if current is not None:
                    current.close()
            missing = await asyncio.to_thread(writer.cache.missing, plan.model.id, plan.hashes)
            requests = await asyncio.to_thread(self._requests, plan, missing)
            self._account(plan, requests)
            if requests.hashes:
                await self._embed(plan, requests, writer.cache)
            # A new index with no document in it is never published: it would only hide the mistake.
            empty_start = current is None and not plan.records
            if (plan.changed or (plan.full and requests.hashes)) and not empty_start:
                manifest = await asyncio.to_thread(self._publish, writer, plan)
                plan.report.snapshot = manifest.snapshot
                plan.report.published = True
                plan.report.documents, plan.report.chunks = manifest.documents, manifest.chunks
            else:
                plan.report.snapshot = self.directory.current_id()
        plan.report.seconds = time.monotonic() - started
        return plan.report

    def _publish(self, writer: IndexWriter, plan: _Plan) -> Manifest:
        """Write the plan: a whole new snapshot, or one generation of changes."""
        vectors = self._vectors(plan, writer.cache)
        extra = {"chunking": self._config_key(plan.model, plan.config)}
        if plan.full:
            return writer.publish(
                embedding_model=plan.model.id,
                dims=vectors.shape[1],
                documents=plan.records,
                chunks=plan.chunks,
                vectors=vectors,
                extra=extra,
                dense=plan.dense,
            )
        return writer.update(upserts=plan.records, chunks=plan.chunks, vectors=vectors, deletes=plan.deletes,
                             extra=extra)

    def _open_current(self) -> Snapshot | None:
        # Planning looks documents up in SQLite only; vectors are not needed to write.
        return self.directory.open_current(dense=False) if self.directory.exists() else None

    def _dense_target(self, current: Snapshot | None) -> DenseTarget:
        """The backend asked for, else the current snapshot's (same Milvus URI), else FAISS."""
        if self._dense_explicit or current is None:
            return self._dense_choice
        entry = current.manifest.dense
        if entry["backend"] == "milvus":
            return DenseTarget("milvus", self._dense_choice.milvus_uri or resolve_uri(entry["uri"], self.directory.root))
        return DenseTarget("faiss")

    def _resolve_model(self, current: Snapshot | None) -> ModelInfo:
        if self._embedder is not None:
            return self._embedder.model
        model_id = self._explicit_model or (current.manifest.embedding_model if current else self._default_model)
        return self.catalog.resolve(model_id, "embedding", self._embedding_limit)

    def _chunking(self, model: ModelInfo) -> ChunkingConfig:
        limit = model.embedding_limit
        if limit is None:
            raise ConfigError(f"{model.id} has no known token limit")
        if model.document_overhead:
            # The document template (e.g. `search_document: `) rides along with every chunk;
            # one token more covers a merge across the seam.
            limit -= counter_for(model).count(model.document_overhead) + 1
        size = self._chunk_tokens or min(limit, DEFAULT_CHUNK_TOKENS)
        if size > limit:
            raise ConfigError(f"--chunk-tokens {size} is over {model.id}'s limit of {limit} tokens")
        if self._overlap >= size // 2:
            raise ConfigError(f"--overlap {self._overlap} must be under half the chunk size ({size})")
        return ChunkingConfig(max_tokens=size, overlap=self._overlap)

    @staticmethod
    def _config_key(model: ModelInfo, config: ChunkingConfig) -> dict[str, object]:
        return {
            "model": model.id,
            "max_tokens": config.max_tokens,
            "overlap": config.overlap,
            "version": CHUNKER_VERSION,
        }

    def _plan(
        self,
        current: Snapshot | None,
        incoming: list[Document],
        drop: Callable[[Snapshot], set[str]],
        *,
        dry_run: bool,
    ) -> _Plan:
        model = self._resolve_model(current)
        config = self._chunking(model)
        report = IndexReport(embedding_model=model.id, dry_run=dry_run, daily_quota_tokens=model.daily_quota_tokens)
        dense = self._dense_target(current)
        unique: list[Document] = []
        seen: set[str] = set()
        for document in incoming:
            if document.id in seen:
                report.problems.append(SourceProblem(document.source, f"duplicate document id {document.id!r}"))
                continue
            seen.add(document.id)
            unique.append(document)
        removed = drop(current) if current is not None else set()
        if current is None or self._needs_rebuild(current, model, config, dense):
            return self._plan_all(current, unique, removed, model, config, report, dense)
        return self._plan_changes(current, unique, removed, model, config, report, dense)

    def _needs_rebuild(self, current: Snapshot, model: ModelInfo, config: ChunkingConfig, dense: DenseTarget) -> bool:
        """A new model, new chunking or another vector backend: every chunk changes place."""
        manifest = current.manifest
        return (
            manifest.embedding_model != model.id
            or manifest.extra.get("chunking") != self._config_key(model, config)
            or manifest.dense["backend"] != dense.backend
        )

    def _plan_changes(
        self,
        current: Snapshot,
        incoming: list[Document],
        removed: set[str],
        model: ModelInfo,
        config: ChunkingConfig,
        report: IndexReport,
        dense: DenseTarget,
    ) -> _Plan:
        """Only the documents given (looked up by id) and the ones removed."""
        known = current.entries([d.id for d in incoming])
        counter = counter_for(model)
        records: list[DocumentRecord] = []
        chunks: list[Chunk] = []
        deletes = set(removed)
        untouched: list[str] = []
        to_cut = sum(len(document.text) for document in incoming)
        cut = 0
        for document in incoming:
            previous: DocumentEntry | None = known.get(document.id)
            deletes.discard(document.id)  # still here, just read again
            if previous is None:
                report.added += 1
            elif previous.content_hash != document.content_hash:
                report.updated += 1
            else:
                report.unchanged += 1
                if previous.source == document.source:
                    untouched.append(document.id)
                    continue
            doc_chunks = self._cut(document, counter, config, cut, to_cut)
            cut += len(document.text)
            if not doc_chunks:
                report.problems.append(SourceProblem(document.source, f"document {document.id!r} has no text"))
                if previous is not None:
                    deletes.add(document.id)
                continue
            records.append(_record(document, doc_chunks))
            chunks.extend(doc_chunks)
            report.document_chunks[document.id] = len(doc_chunks)
        report.removed = len(deletes)
        # Figures after the change; a published run replaces them with the manifest's.
        replaced = [r.doc_id for r in records if r.doc_id in known]
        report.documents = current.manifest.documents + report.added - report.removed
        report.chunks = current.manifest.chunks + len(chunks) - current.chunk_count([*replaced, *deletes])
        hashes = [sha256_hex(chunk.embedding_text) for chunk in chunks]
        changed = bool(records or deletes)
        # Unchanged documents' chunks count as served from the cache, as in a full run.
        kept_counts = current.chunk_counts(untouched) if untouched else {}
        report.document_chunks.update(kept_counts)
        kept = sum(kept_counts.values())
        return _Plan(model, config, records, chunks, hashes, report, changed, False, tuple(sorted(deletes)), dense,
                     kept)

    def _cut(
        self, document: Document, counter: TokenCounter, config: ChunkingConfig, done_before: int, to_cut: int
    ) -> list[Chunk]:
        """Chunk one document, reporting progress in characters of all that this run cuts."""
        chunks = chunk_document(
            document, counter, config,
            on_progress=lambda offset: self._stage("chunking", done_before + offset, to_cut),
        )
        self._stage("chunking", done_before + len(document.text), to_cut)
        return chunks

    def _plan_all(
        self,
        current: Snapshot | None,
        incoming: list[Document],
        removed: set[str],
        model: ModelInfo,
        config: ChunkingConfig,
        report: IndexReport,
        dense: DenseTarget,
    ) -> _Plan:
        """The whole new index: a first build, or a model, chunking or backend change."""
        old_records = current.documents() if current else {}
        same_chunking = (
            current is not None and current.manifest.extra.get("chunking") == self._config_key(model, config)
        )
        old_chunks: dict[str, list[Chunk]] = {}
        if current and same_chunking:
            for chunk in current.chunks():
                old_chunks.setdefault(chunk.doc_id, []).append(chunk)

        final: dict[str, Document | DocumentRecord] = {}
        for record in old_records.values():
            if record.doc_id not in removed:
                final[record.doc_id] = record
        report.removed = len(old_records) - len(final)
        for document in incoming:
            previous = old_records.get(document.id)
            if previous is None:
                report.added += 1
            elif previous.content_hash != document.content_hash:
                report.updated += 1
            else:
                report.unchanged += 1
            if previous is not None and previous.doc_id in removed:
                report.removed -= 1  # it is still here, just read again
            final[document.id] = document

        records: list[DocumentRecord] = []
        chunks: list[Chunk] = []
        counter = counter_for(model)
        read = {document.id for document in incoming}

        def reused(doc_id: str) -> bool:
            previous = old_records.get(doc_id)
            return previous is not None and previous.content_hash == final[doc_id].content_hash and doc_id in old_chunks

        # Progress in characters: one large file is one document, and it can take a while to cut.
        to_cut = sum(len(final[doc_id].text) for doc_id in final if not reused(doc_id))
        cut = 0
        for doc_id in sorted(final):
            item = final[doc_id]
            if reused(doc_id):
                doc_chunks = old_chunks[doc_id]
            else:
                doc_chunks = self._cut(_as_document(item), counter, config, cut, to_cut)
                cut += len(item.text)
            if not doc_chunks:
                report.problems.append(SourceProblem(item.source, f"document {doc_id!r} has no text"))
                continue
            if doc_id in read:
                report.document_chunks[doc_id] = len(doc_chunks)
            records.append(_record(item, doc_chunks))
            chunks.extend(doc_chunks)

        report.documents = len(records)
        report.chunks = len(chunks)
        hashes = [sha256_hex(chunk.embedding_text) for chunk in chunks]
        return _Plan(model, config, records, chunks, hashes, report, True, True, (), dense)

    def _requests(self, plan: _Plan, missing: list[str]) -> _Requests:
        """How the cache misses will be sent: sorted by length, grouped into requests.

        Sorting by token count makes batches of similar lengths: less padding for the
        local model, fuller token budgets for remote requests. Dry runs use the same
        plan, so their request counts are what the real run sends.
        """
        # The chunker counted each chunk's embedding text under this model's counter already.
        texts, counts = self._texts_for(plan, missing)
        order = sorted(range(len(texts)), key=lambda i: counts[i])
        hashes = [missing[i] for i in order]
        texts = [texts[i] for i in order]
        counts = [counts[i] for i in order]
        batches = plan_batches(counts, *self._batch_limits(plan.model)) if counts else []
        return _Requests(hashes, texts, counts, batches)

    def _account(self, plan: _Plan, requests: _Requests) -> None:
        """Fill the report's before-embedding figures: what the cache lacks and how it would be sent."""
        report = plan.report
        missing = set(requests.hashes)
        report.cached_chunks = sum(1 for h in plan.hashes if h not in missing) + plan.kept_chunks
        report.chunks_to_embed = len(requests.hashes)
        report.tokens_to_embed = int(sum(requests.counts))
        report.requests_planned = len(requests.batches)

    def _batch_limits(self, model: ModelInfo) -> tuple[int, int]:
        if self._embedder is not None:
            return self._embedder.max_batch_items, self._embedder.max_batch_tokens
        if model.provider == "local":
            from .local import LocalEmbedder

            return LocalEmbedder.max_batch_items, LocalEmbedder.max_batch_items * (model.embedding_limit or 256)
        from .remote import default_batch_limits

        options = self._remote or RemoteOptions()
        items, tokens = default_batch_limits(model)
        return options.batch_items or items, options.batch_tokens or tokens

    @staticmethod
    def _texts_for(plan: _Plan, hashes: Sequence[str]) -> tuple[list[str], list[int]]:
        """The embedding texts of these text hashes, and their token counts."""
        by_hash: dict[str, Chunk] = {}
        wanted = set(hashes)
        for chunk, text_hash in zip(plan.chunks, plan.hashes):
            if text_hash in wanted and text_hash not in by_hash:
                by_hash[text_hash] = chunk
        chunks = [by_hash[h] for h in hashes]
        return [c.embedding_text for c in chunks], [c.tokens for c in chunks]

    def embedder_for(self, model: ModelInfo) -> Embedder:
        """The embedder this indexer uses for `model` (built once)."""
        if self._embedder is None:
            options = {"on_wait": self._on_wait} if self._on_wait and model.provider == "remote" else {}
            self._embedder = make_embedder(
                model.id, self._remote, self.catalog, limit=self._embedding_limit, **options
            )
        if self._embedder.model.id != model.id:
            raise ConfigError(f"the embedder is for {self._embedder.model.id}, the index needs {model.id}")
        return self._embedder

    async def _embed(self, plan: _Plan, requests: _Requests, cache: EmbeddingCache) -> None:
        """Embed what the cache lacks, committing every batch to the cache as it arrives.

        When a request fails (quota, rate limits, a failing API), no further batch is
        started, but the requests already in flight are let finish and their vectors
        are kept: the API works on them and bills them whether or not we wait, so
        cancelling them would pay for those chunks again on the rerun.
        """
        embedder = self.embedder_for(plan.model)
        texts, counts, missing = requests.texts, requests.counts, requests.hashes
        gate = asyncio.Semaphore(max(1, embedder.concurrency))
        total = len(texts)
        done = 0
        report = plan.report
        failures: list[IoragError] = []

        async def run(batch: list[int]) -> None:
            nonlocal done
            async with gate:
                if failures:
                    return  # not sent: the run is ending
                try:
                    vectors = await embedder.embed_batch([texts[i] for i in batch])
                except IoragError as exc:
                    failures.append(exc)
                    return
            # Commit before anything else can fail: this batch is never paid for twice.
            cache.put_many(plan.model.id, [(missing[i], vectors[row]) for row, i in enumerate(batch)])
            done += len(batch)
            report.chunks_embedded += len(batch)
            report.tokens_embedded += sum(counts[i] for i in batch)
            if self._progress:
                self._progress(done, total)
            self._stage("embedding", done, total)

        tasks = [asyncio.create_task(run(batch)) for batch in requests.batches]
        try:
            await asyncio.gather(*tasks)
        except BaseException:
            # A bug, a failed cache write or Ctrl-C: stop everything now.
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        if not failures:
            return
        quota = next((f for f in failures if isinstance(f, QuotaExhaustedError)), None)
        if quota is not None:
            raise QuotaExhaustedError(
                f"embedding quota exhausted: {done} of {total} new chunks embedded and saved, "
                f"{total - done} left; {quota}",
                status_code=429,
                retry_after=quota.retry_after,
            ) from quota
        raise failures[0]

    def _vectors(self, plan: _Plan, cache: EmbeddingCache) -> np.ndarray:
        found = cache.get_many(plan.model.id, list(dict.fromkeys(plan.hashes)))
        lacking = [h for h in plan.hashes if h not in found]
        if lacking:
            raise ConfigError(f"{len(lacking)} chunks have no embedding after the run; rerun to complete")
        dims = plan.model.dims or next(iter(found.values())).shape[0]
        if not plan.hashes:
            return np.zeros((0, dims), dtype=np.float32)
        return np.stack([found[h] for h in plan.hashes]).astype(np.float32, copy=False)

    def _stage(self, stage: str, done: int, total: int) -> None:
        if self._on_stage is not None:
            self._on_stage(stage, done, total)

    async def aclose(self) -> None:
        """Close the embedder this indexer built (its HTTP connections), not one it was given."""
        if self._embedder is not None and self._owns_embedder:
            await self._embedder.aclose()


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" + ("" if count == 1 else "s")


def _as_document(item: Document | DocumentRecord) -> Document:
    if isinstance(item, Document):
        return item
    return Document(
        id=item.doc_id, text=item.text, title=item.title, metadata=item.metadata, source=item.source,
        segments=item.segments,
    )


def _record(item: Document | DocumentRecord, chunks: list[Chunk]) -> DocumentRecord:
    chunk_ids = tuple(c.chunk_id for c in chunks)
    if isinstance(item, DocumentRecord):
        return replace(item, chunk_ids=chunk_ids)
    return DocumentRecord(
        doc_id=item.id,
        source=item.source,
        content_hash=item.content_hash,
        title=item.title,
        metadata=dict(item.metadata),
        chunk_ids=chunk_ids,
        text=item.text,
        segments=item.segments,
    )
