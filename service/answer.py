"""Turning retrieved chunks into an answer: an IO Intelligence chat model, or extractive offline."""

from __future__ import annotations

import re
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Sequence

from indexer.api import IOIntelligenceClient, Usage
from indexer.catalog import EXTRACTIVE_MODEL, ModelInfo
from indexer.errors import ContextLengthError
from indexer.models import ScoredChunk
from indexer.tokens import counter_for

from .citations import CitationRenumberer, renumber_citations
from .extractive import extractive_answer
from .prompting import PackedPrompt, TokenRatioTracker, budget_for, pack_prompt, shrink_budget


@dataclass(frozen=True)
class ContextReport:
    """How much retrieved context went into the answer."""

    chunks: int
    #: Prompt tokens as iorag counted them (chat), or the chunks' tokens (extractive).
    tokens: int
    dropped: int
    #: Most prompt tokens the packer could use (`Budget.prompt_tokens`); None for extractive answers.
    budget: int | None = None


@dataclass(frozen=True)
class Answer:
    """An answer with the sources it cites; `[n]` in the text is `sources[n-1]`.

    `sources` holds only the cited chunks, each once, numbered 1..n in order of
    first citation; `retrieved` holds every chunk the answer was drawn from (the
    prompt's context), cited or not.
    """

    answer: str
    model: str
    sources: list[ScoredChunk]
    usage: Usage
    context: ContextReport
    #: 0-based positions in `sources` that the answer cites (all of them, since sources are the cited ones).
    cited: list[int] = field(default_factory=list)
    #: What retrieval searched for: the question, or a follow-up made to stand alone.
    query: str = ""
    #: The context the answer was drawn from, in rank order.
    retrieved: list[ScoredChunk] = field(default_factory=list)


def stream_pieces(text: str) -> list[str]:
    """`text` cut into word-sized deltas (each word with the spaces after it) for streaming
    an answer that exists whole, such as the extractive one; they join back to `text`."""
    pieces = re.findall(r"\s*\S+\s*", text)
    return pieces or ([text] if text else [])


def _cited_answer(text: str, drawn_from: Sequence[ScoredChunk], **fields: Any) -> Answer:
    """An Answer whose citations are renumbered 1..n over the cited chunks of `drawn_from`."""
    text, cited = renumber_citations(text, [hit.chunk.chunk_id for hit in drawn_from])
    sources = [drawn_from[i] for i in cited]
    return Answer(
        answer=text.strip(), sources=sources, cited=list(range(len(sources))), retrieved=list(drawn_from), **fields
    )


@dataclass(frozen=True)
class AnswerEvent:
    """One piece of a streamed answer: a text `delta`, or the final `answer`."""

    delta: str = ""
    answer: Answer | None = None


def answer_extractively(question: str, ranked: Sequence[ScoredChunk]) -> Answer:
    """The offline answer: sentences from the sources, cited."""
    picked = extractive_answer(question, ranked)
    tokens = sum(hit.chunk.tokens for hit in ranked)
    return _cited_answer(
        picked.text,
        ranked,
        model=EXTRACTIVE_MODEL,
        usage=Usage(),
        context=ContextReport(chunks=len(ranked), tokens=tokens, dropped=0),
    )


class ChatAnswerer:
    """Answers with an IO Intelligence chat model, the prompt always inside the model's budget."""

    def __init__(self, client: IOIntelligenceClient, tracker: TokenRatioTracker | None = None) -> None:
        self.client = client
        self.tracker = tracker or TokenRatioTracker()

    def pack(
        self,
        question: str,
        ranked: Sequence[ScoredChunk],
        model: ModelInfo,
        max_completion_tokens: int | None,
        history: Sequence[dict[str, str]] = (),
    ) -> PackedPrompt:
        budget = budget_for(
            model,
            max_completion_tokens=max_completion_tokens,
            margin_ratio=self.tracker.margin_ratio(model.id),
        )
        return pack_prompt(question, ranked, counter_for(model), budget, history=history)

    async def answer(
        self,
        question: str,
        ranked: Sequence[ScoredChunk],
        model: ModelInfo,
        *,
        max_completion_tokens: int | None = None,
        history: Sequence[dict[str, str]] = (),
    ) -> Answer:
        packed = self.pack(question, ranked, model, max_completion_tokens, history)
        try:
            result = await self.client.chat(
                model.id, packed.messages, max_completion_tokens=packed.max_completion_tokens
            )
        except ContextLengthError as exc:
            # Our count was an estimate and the server disagrees: shrink by what it reports, once.
            packed = self._repack(question, ranked, model, packed, exc)
            result = await self.client.chat(
                model.id, packed.messages, max_completion_tokens=packed.max_completion_tokens
            )
        if result.usage.prompt_tokens:
            self.tracker.observe(model.id, packed.prompt_tokens, result.usage.prompt_tokens)
        return self._finish(model, packed, result.content, result.usage.prompt_tokens, result.usage.completion_tokens)

    async def complete(self, model: ModelInfo, messages: list[dict[str, str]], max_completion_tokens: int) -> tuple[str, Usage]:
        """One plain chat call (e.g. rewriting a follow-up): the reply's text and its usage."""
        result = await self.client.chat(model.id, messages, max_completion_tokens=max_completion_tokens)
        return result.content, result.usage

    async def stream(
        self,
        question: str,
        ranked: Sequence[ScoredChunk],
        model: ModelInfo,
        *,
        max_completion_tokens: int | None = None,
        history: Sequence[dict[str, str]] = (),
    ) -> AsyncIterator[AnswerEvent]:
        packed = self.pack(question, ranked, model, max_completion_tokens, history)
        parts: list[str] = []
        prompt_tokens = completion_tokens = 0
        for attempt in range(2):
            # Citations are renumbered as they stream, exactly as `_finish` renumbers the whole text.
            renumberer = CitationRenumberer([hit.chunk.chunk_id for hit in packed.sources])
            try:
                # aclosing: a consumer that stops early frees the connection and its slot at once.
                deltas = self.client.chat_stream(
                    model.id, packed.messages, max_completion_tokens=packed.max_completion_tokens
                )
                async with aclosing(deltas) as stream:
                    async for delta in stream:
                        if delta.usage is not None:
                            prompt_tokens = delta.usage.prompt_tokens
                            completion_tokens = delta.usage.completion_tokens
                        if delta.content and not delta.reasoning:
                            parts.append(delta.content)
                            released = renumberer.feed(delta.content)
                            if released:
                                yield AnswerEvent(delta=released)
                rest = renumberer.flush()
                if rest:
                    yield AnswerEvent(delta=rest)
                break
            except ContextLengthError as exc:
                # The server refuses before the first byte; shrink by what it reports and stream once more.
                if parts or attempt:
                    raise
                packed = self._repack(question, ranked, model, packed, exc)
        if prompt_tokens:
            self.tracker.observe(model.id, packed.prompt_tokens, prompt_tokens)
        yield AnswerEvent(answer=self._finish(model, packed, "".join(parts), prompt_tokens, completion_tokens))

    def _repack(
        self,
        question: str,
        ranked: Sequence[ScoredChunk],
        model: ModelInfo,
        packed: PackedPrompt,
        exc: ContextLengthError,
    ) -> PackedPrompt:
        excess = (exc.requested or 0) - (exc.limit or 0)
        if exc.requested and packed.prompt_tokens:
            self.tracker.observe(model.id, packed.prompt_tokens, exc.requested - packed.max_completion_tokens)
        budget = shrink_budget(packed.budget_spec, max(excess, 0))
        history = packed.messages[1:-1]
        return pack_prompt(question, ranked, counter_for(model), budget, history=history)

    @staticmethod
    def _finish(model: ModelInfo, packed: PackedPrompt, text: str, prompt_tokens: int, completion_tokens: int) -> Answer:
        return _cited_answer(
            text,
            packed.sources,
            model=model.id,
            usage=Usage(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens),
            context=ContextReport(
                chunks=len(packed.sources), tokens=packed.prompt_tokens, dropped=packed.dropped, budget=packed.budget
            ),
        )


def answer_json(answer: Answer) -> dict[str, Any]:
    """The contract's JSON shape for an answer; `context.budget` only for chat answers."""
    context: dict[str, Any] = {
        "chunks": answer.context.chunks,
        "tokens": answer.context.tokens,
        "dropped": answer.context.dropped,
    }
    if answer.context.budget is not None:
        context["budget"] = answer.context.budget
    return {
        "answer": answer.answer,
        "model": answer.model,
        "sources": [hit_json(hit) for hit in answer.sources],
        "usage": {"prompt_tokens": answer.usage.prompt_tokens, "completion_tokens": answer.usage.completion_tokens},
        "context": context,
        "cited": [i + 1 for i in answer.cited],
        "query": answer.query,
        "retrieved": [hit_json(hit) for hit in answer.retrieved],
    }


def hit_json(hit: ScoredChunk) -> dict[str, Any]:
    chunk = hit.chunk
    return {
        "chunk_id": chunk.chunk_id,
        "doc_id": chunk.doc_id,
        "title": chunk.title,
        "headings": list(chunk.headings),
        "text": chunk.text,
        "score": round(hit.score, 6),
        "location": dict(chunk.location) if chunk.location is not None else None,
    }
