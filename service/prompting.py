"""Packing retrieved context into a chat model's prompt budget, best-ranked first.

How a prompt is counted (`count_messages`): the token count of each message's
content, plus `MESSAGE_OVERHEAD` per message for the chat template's role
markers, plus `REPLY_PRIMING` for the tokens that open the assistant's turn.
What the template adds beyond that (a BOS token, a date line some Llama
templates put into the system message) is covered by `TEMPLATE_MARGIN`,
reserved in every `Budget`. Counts made by an estimating counter can still
fall short of the server's; `TokenRatioTracker` learns by how much from
`usage.prompt_tokens` and `budget_for` widens the margin to match, and a 400
"maximum context length" answer is handled by `shrink_budget` and one retry.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from dataclasses import dataclass, replace
from typing import Sequence

from indexer.catalog import ModelInfo
from indexer.errors import ConfigError
from indexer.models import ScoredChunk
from indexer.text import sentence_spans
from indexer.tokens import TokenCounter

from .errors import BudgetError

#: Tokens a chat template spends on each message besides its content (role
#: header and end-of-turn markers: 4-5 for Llama 3 and OpenAI-style templates).
MESSAGE_OVERHEAD = 8
#: Tokens that open the assistant's reply (`<|start_header_id|>assistant...`).
REPLY_PRIMING = 8
#: Reserved in every budget for template text not modelled above.
TEMPLATE_MARGIN = 32
#: Completion budget when the caller gives none (also capped at a quarter of the context).
DEFAULT_MAX_COMPLETION_TOKENS = 1024
#: A budget leaving less room than this for the prompt is refused outright.
MIN_PROMPT_TOKENS = 128
#: The last chunk is cut to fit only if at least this many of its tokens survive.
MIN_CUT_TOKENS = 32
#: Extra tokens taken off by `shrink_budget` beyond the excess the server reported.
SHRINK_SLACK = 32
#: Blocks counted per `count_many` call; counting stops once the budget is full.
_COUNT_BATCH = 32

DEFAULT_SYSTEM = (
    "You answer questions using only the numbered sources in the user's message. "
    "After each statement, cite the sources that support it by number in square brackets, "
    "like [1] or [2][3]. If the sources do not contain the answer, say so plainly "
    "instead of guessing. Be concise."
)
SOURCES_HEADING = "Sources:\n\n"
NO_SOURCES = "Sources: none were found.\n\n"
QUESTION_PREFIX = "Question: "


@dataclass(frozen=True)
class Budget:
    """Token limits for one chat request; the prompt must stay within `prompt_tokens`."""

    context_length: int
    max_completion_tokens: int
    margin: int

    @property
    def prompt_tokens(self) -> int:
        """Most tokens the counted prompt may take."""
        return self.context_length - self.max_completion_tokens - self.margin


@dataclass(frozen=True)
class PackedPrompt:
    """Chat messages holding as much ranked context as the budget allows."""

    #: OpenAI chat messages: system, the earlier turns that fit, then user.
    messages: list[dict[str, str]]
    #: The chunks in the prompt, numbered [1]..[n] in this order.
    sources: list[ScoredChunk]
    #: Counted with `count_messages` on the final messages.
    prompt_tokens: int
    #: `Budget.prompt_tokens` it was packed for.
    budget: int
    #: Retrieved chunks left out entirely.
    dropped: int
    #: The last source is a sentence-boundary prefix of its chunk, not the whole chunk.
    truncated: bool
    #: The whole budget (`budget` is its `prompt_tokens`); what `shrink_budget` takes on a retry.
    budget_spec: Budget
    #: Earlier turns of the conversation in the prompt (the newest ones).
    history: int = 0

    @property
    def max_completion_tokens(self) -> int:
        """The completion budget to send with these messages."""
        return self.budget_spec.max_completion_tokens


def budget_for(model: ModelInfo, *, max_completion_tokens: int | None = None, margin_ratio: float = 0.0) -> Budget:
    """The token budget for a request to `model`.

    The completion budget defaults to the smallest of `DEFAULT_MAX_COMPLETION_TOKENS`,
    the model's output cap and a quarter of its context; a requested value is
    clamped to the model's output cap. The margin is `TEMPLATE_MARGIN` plus
    room for the counter to under-count by `margin_ratio`: a prompt counted at
    `c` may really be `c * (1 + margin_ratio)` tokens.

    Args:
        model: the chat model.
        max_completion_tokens: tokens reserved for the answer, or None for the default.
        margin_ratio: learned under-count ratio (`TokenRatioTracker.margin_ratio`).

    Returns:
        The budget.

    Raises:
        ConfigError: the model's context length is unknown, or the completion
            budget is not positive.
        BudgetError: the completion budget leaves too little room for a prompt.
    """
    context = model.context_length
    if context is None:
        raise ConfigError(
            f"the context length of {model.id!r} is unknown",
            hint="choose a model whose context length `iorag models` lists",
        )
    if max_completion_tokens is None:
        completion = min(DEFAULT_MAX_COMPLETION_TOKENS, context // 4)
    elif max_completion_tokens < 1:
        raise ConfigError(f"max_completion_tokens must be at least 1, not {max_completion_tokens}")
    else:
        completion = max_completion_tokens
    if model.max_output_tokens:
        completion = min(completion, model.max_output_tokens)

    ratio = margin_ratio if math.isfinite(margin_ratio) and margin_ratio > 0 else 0.0
    available = context - completion - TEMPLATE_MARGIN
    # Leave c * (1 + ratio) <= available for the largest counted prompt c.
    learned = math.ceil(available * ratio / (1.0 + ratio)) if available > 0 else 0
    budget = Budget(context_length=context, max_completion_tokens=completion, margin=TEMPLATE_MARGIN + learned)
    if budget.prompt_tokens < MIN_PROMPT_TOKENS:
        raise BudgetError(
            f"{model.id!r} has a context of {context} tokens; with {completion} reserved for the answer "
            f"only {budget.prompt_tokens} are left for the prompt",
            hint="lower max_completion_tokens or choose a model with a longer context",
        )
    return budget


def shrink_budget(budget: Budget, excess: int) -> Budget:
    """The budget for one retry after the server refused a prompt as too long.

    Args:
        budget: the budget the refused prompt was packed for.
        excess: requested minus allowed tokens, from the server's 400 message.

    Returns:
        A budget smaller by `excess` plus `SHRINK_SLACK`.

    Raises:
        BudgetError: nothing would be left for the prompt.
    """
    smaller = replace(budget, margin=budget.margin + max(excess, 0) + SHRINK_SLACK)
    if smaller.prompt_tokens < 1:
        raise BudgetError(
            f"the server refused the prompt as too long and no room is left to shrink it "
            f"(context {budget.context_length}, completion {budget.max_completion_tokens})",
            hint="lower max_completion_tokens",
        )
    return smaller


def count_messages(messages: Sequence[dict[str, str]], counter: TokenCounter) -> int:
    """Tokens of a chat prompt: contents plus per-message and reply-priming overhead."""
    contents = counter.count_many([m["content"] for m in messages])
    return sum(contents) + MESSAGE_OVERHEAD * len(messages) + REPLY_PRIMING


def pack_prompt(
    question: str,
    ranked: Sequence[ScoredChunk],
    counter: TokenCounter,
    budget: Budget,
    *,
    system: str = DEFAULT_SYSTEM,
    history: Sequence[dict[str, str]] = (),
) -> PackedPrompt:
    """Build the chat prompt: instructions, earlier turns, numbered sources in rank order, the question.

    Whole chunks go in while they fit. The first one that does not is cut at
    the last sentence boundary that fits, if at least `MIN_CUT_TOKENS` of it
    survive, and packing stops: every later chunk is dropped. Each block is
    counted once; the assembled messages are then recounted, and if joining
    the blocks cost more than their sum, the last source is cut or dropped
    until the recount fits.

    Earlier turns of the conversation come last in priority: after the
    question and the sources, the room left takes whole turns, newest first,
    and the oldest kept turn is a user turn (chat templates expect the
    conversation to open with one). They go between the system message and
    the final user message, in their order.

    Args:
        question: the user's question.
        ranked: retrieved chunks, best first.
        counter: the chat model's token counter.
        budget: from `budget_for`.
        system: the system message.
        history: earlier turns, oldest first, as `{"role", "content"}` chat messages.

    Returns:
        The messages and what went into them; `prompt_tokens <= budget.prompt_tokens`.

    Raises:
        BudgetError: the system message and question alone exceed the budget.
    """
    limit = budget.prompt_tokens
    question_part = QUESTION_PREFIX + question.strip()
    fixed = 2 * MESSAGE_OVERHEAD + REPLY_PRIMING
    system_tokens, heading_tokens, empty_tokens, question_tokens = counter.count_many(
        [system, SOURCES_HEADING, NO_SOURCES, question_part]
    )
    base = fixed + system_tokens + max(heading_tokens, empty_tokens) + question_tokens
    if base > limit:
        raise _too_long(base, limit)

    sources: list[ScoredChunk] = []
    blocks: list[str] = []
    block_tokens: list[int] = []
    truncated = False
    used = base
    full = False
    for offset in range(0, len(ranked), _COUNT_BATCH):
        batch = ranked[offset : offset + _COUNT_BATCH]
        texts = [_block(offset + i + 1, s.chunk.header, s.chunk.text) for i, s in enumerate(batch)]
        for scored, text, tokens in zip(batch, texts, counter.count_many(texts)):
            if used + tokens <= limit:
                sources.append(scored)
                blocks.append(text)
                block_tokens.append(tokens)
                used += tokens
                continue
            cut = _cut(len(blocks) + 1, scored, counter, limit - used)
            if cut is not None:
                sources.append(cut[0])
                blocks.append(cut[1])
                block_tokens.append(cut[2])
                truncated = True
            full = True
            break
        if full:
            break

    # The sum of the parts is an estimate: tokens can merge (or split) where
    # blocks meet. The recount of the real messages is what the budget holds to.
    while True:
        messages = _messages(system, blocks, question_part)
        total = count_messages(messages, counter)
        if total <= limit:
            break
        if not blocks:
            raise _too_long(total, limit)
        # Drop whole blocks from the end while that frees less than the excess,
        # then re-cut the last one dropped shorter than before, or leave it out.
        excess = total - limit
        while True:
            last = sources.pop()
            blocks.pop()
            tokens = block_tokens.pop()
            if tokens > excess or not blocks:
                break
            excess -= tokens
        room = tokens - excess
        truncated = False
        shorter_than = len(last.chunk.text.strip())
        cut = _cut(len(blocks) + 1, ranked[len(blocks)], counter, room, shorter_than=shorter_than)
        if cut is not None:
            sources.append(cut[0])
            blocks.append(cut[1])
            block_tokens.append(cut[2])
            truncated = True

    turns = _fit_history(history, counter, limit - total)
    while turns:
        with_turns = [messages[0], *turns, messages[-1]]
        recount = count_messages(with_turns, counter)
        if recount <= limit:
            messages, total = with_turns, recount
            break
        turns = _opening_with_user(turns[1:])

    return PackedPrompt(
        messages=messages,
        sources=sources,
        prompt_tokens=total,
        budget=limit,
        dropped=len(ranked) - len(sources),
        truncated=truncated,
        budget_spec=budget,
        history=len(turns),
    )


def _fit_history(history: Sequence[dict[str, str]], counter: TokenCounter, room: int) -> list[dict[str, str]]:
    """The newest whole turns whose messages fit `room` tokens, oldest first, opening with a user turn."""
    if not history or room <= MESSAGE_OVERHEAD:
        return []
    counts = counter.count_many([turn["content"] for turn in history])
    kept = 0
    used = 0
    for tokens in reversed(counts):
        if used + tokens + MESSAGE_OVERHEAD > room:
            break
        used += tokens + MESSAGE_OVERHEAD
        kept += 1
    turns = [{"role": t["role"], "content": t["content"]} for t in history[len(history) - kept :]] if kept else []
    return _opening_with_user(turns)


def _opening_with_user(turns: list[dict[str, str]]) -> list[dict[str, str]]:
    while turns and turns[0]["role"] != "user":
        turns = turns[1:]
    return turns


def _too_long(needed: int, limit: int) -> BudgetError:
    return BudgetError(
        f"the question does not fit the prompt budget: {needed} tokens counted, {limit} allowed",
        hint="shorten the question, lower max_completion_tokens or choose a model with a longer context",
    )


def _block(number: int, header: str, text: str) -> str:
    """One numbered source as it appears in the user message (separator included)."""
    label = f"[{number}] {header}" if header else f"[{number}]"
    return f"{label}\n{text.strip()}\n\n"


def _messages(system: str, blocks: list[str], question_part: str) -> list[dict[str, str]]:
    context = SOURCES_HEADING + "".join(blocks) if blocks else NO_SOURCES
    return [
        {"role": "system", "content": system},
        {"role": "user", "content": context + question_part},
    ]


def _cut(
    number: int,
    scored: ScoredChunk,
    counter: TokenCounter,
    room: int,
    *,
    shorter_than: int | None = None,
) -> tuple[ScoredChunk, str, int] | None:
    """The longest sentence-boundary prefix of the chunk whose block fits `room` tokens.

    Only prefixes shorter than `shorter_than` characters (default: the whole
    stripped text, which did not fit) are tried.

    Returns (shortened chunk, its block, the block's tokens), or None when no
    prefix of at least `MIN_CUT_TOKENS` tokens fits.
    """
    if room < MIN_CUT_TOKENS:
        return None
    chunk = scored.chunk
    text = chunk.text.strip()
    lead = len(chunk.text) - len(chunk.text.lstrip())
    limit = len(text) if shorter_than is None else shorter_than
    ends = [end for _, end in sentence_spans(text) if end < limit]
    # Binary search for the last prefix that fits; counts grow with the prefix.
    best: tuple[int, str, int] | None = None
    low, high = 0, len(ends) - 1
    while low <= high:
        middle = (low + high) // 2
        block = _block(number, chunk.header, text[: ends[middle]])
        tokens = counter.count(block)
        if tokens <= room:
            best = (ends[middle], block, tokens)
            low = middle + 1
        else:
            high = middle - 1
    if best is None:
        return None
    end, block, tokens = best
    prefix = text[:end]
    if counter.count(prefix) < MIN_CUT_TOKENS:
        return None
    start = chunk.start + lead
    shortened = replace(chunk, text=prefix, start=start, end=start + len(prefix))
    return ScoredChunk(chunk=shortened, score=scored.score), block, tokens


class TokenRatioTracker:
    """Learns how far a model's real prompt tokens exceed iorag's count of them.

    Feed it `usage.prompt_tokens` after each chat call; pass `margin_ratio()`
    to `budget_for`. The ratio for one call is `(actual - TEMPLATE_MARGIN) /
    counted`, since the budget already reserves `TEMPLATE_MARGIN` beyond the
    count. The margin is the worst ratio among the most recent `window` calls,
    minus one, plus `extra`; zero while the count has never fallen short.
    Short prompts are ignored: there a fixed template overhead would look like
    a large ratio. Thread-safe; in memory only.
    """

    def __init__(
        self,
        *,
        window: int = 50,
        extra: float = 0.02,
        max_margin: float = 0.5,
        min_counted: int = 256,
    ) -> None:
        """
        Args:
            window: how many recent observations per model count.
            extra: added to the margin once any under-count has been seen.
            max_margin: the margin never exceeds this (one odd response must not halve a budget).
            min_counted: observations of smaller prompts are ignored.
        """
        self._window = window
        self._extra = extra
        self._max_margin = max_margin
        self._min_counted = min_counted
        self._lock = threading.Lock()
        self._ratios: dict[str, deque[float]] = {}

    def observe(self, model_id: str, counted: int, actual: int) -> None:
        """Record one call: `counted` by iorag (`PackedPrompt.prompt_tokens`), `actual` per the API."""
        if counted < self._min_counted or actual <= 0:
            return
        ratio = (actual - TEMPLATE_MARGIN) / counted
        with self._lock:
            self._ratios.setdefault(model_id, deque(maxlen=self._window)).append(ratio)

    def margin_ratio(self, model_id: str) -> float:
        """How much to widen the margin for `model_id`, as a fraction of the prompt (>= 0)."""
        with self._lock:
            ratios = self._ratios.get(model_id)
            worst = max(ratios) if ratios else 0.0
        if worst <= 1.0:
            return 0.0
        return min(worst - 1.0 + self._extra, self._max_margin)
