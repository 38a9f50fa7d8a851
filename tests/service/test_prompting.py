"""pack_prompt stays within budget, keeps rank order and fills the room it has."""

from __future__ import annotations

import random
import threading
import time
from typing import Sequence

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from indexer.catalog import ModelInfo, default_catalog
from indexer.errors import ConfigError
from indexer.models import Chunk, ScoredChunk
from indexer.tokens import TokenCounter, counter_for, counter_for_family
from service.errors import BudgetError
from indexer.text import sentence_spans
from service.prompting import (
    DEFAULT_SYSTEM,
    MESSAGE_OVERHEAD,
    MIN_CUT_TOKENS,
    NO_SOURCES,
    QUESTION_PREFIX,
    REPLY_PRIMING,
    SHRINK_SLACK,
    TEMPLATE_MARGIN,
    Budget,
    PackedPrompt,
    TokenRatioTracker,
    budget_for,
    count_messages,
    pack_prompt,
    shrink_budget,
)

CATALOG = default_catalog()

_WORDS = (
    "the index stores each chunk with its embedding and a short header so that search can "
    "rank passages by cosine similarity while the service packs the best ones into a prompt "
    "model context window tokens budget answer question source citation retrieval document "
    "quota refresh rate limit retry backoff server request response gateway latency python "
    "library command line interface vector store faiss metadata ingestion pipeline resumable "
    "error message user key account tier credit pool hours minutes version release notes"
).split()


def prose(seed: int, sentences: int) -> str:
    """Deterministic English-like text: `sentences` sentences of 6-22 words."""
    rng = random.Random(seed)
    out = []
    for _ in range(sentences):
        words = [rng.choice(_WORDS) for _ in range(rng.randint(6, 22))]
        if rng.random() < 0.15:
            words.insert(rng.randrange(len(words)), str(rng.randint(0, 99999)))
        out.append(" ".join(words).capitalize() + rng.choice(".....!?"))
    return " ".join(out)


def scored(i: int, text: str, *, title: str = "", headings: tuple[str, ...] = ()) -> ScoredChunk:
    chunk = Chunk(
        chunk_id=f"c{i}",
        doc_id=f"d{i}",
        ordinal=0,
        text=text,
        start=100,
        end=100 + len(text),
        tokens=0,
        title=title,
        headings=headings,
    )
    return ScoredChunk(chunk=chunk, score=1.0 - i / 1000)


def chat_model(context_length: int, tokenizer: str = "other") -> ModelInfo:
    return ModelInfo(id="test/chat", kind="chat", context_length=context_length, tokenizer=tokenizer)


class SeamCounter:
    """A counter whose whole is more than the sum of its parts.

    Every `\\n[` costs 4 extra tokens: blocks end in a newline and start with
    `[`, so the assembled prompt counts more than the blocks did separately.
    That forces pack_prompt's recount-and-shrink path.
    """

    name = "seam"
    exact = True

    def count(self, text: str) -> int:
        return len(text.split()) + 4 * text.count("\n[")

    def count_many(self, texts: Sequence[str]) -> list[int]:
        return [self.count(t) for t in texts]


COUNTERS: dict[str, TokenCounter] = {
    "llama3": counter_for_family("llama3"),
    "other": counter_for_family("other"),
    "wordpiece": counter_for_family("bert-uncased"),
    "seam": SeamCounter(),
}


def check_packed(
    packed: PackedPrompt,
    question: str,
    ranked: Sequence[ScoredChunk],
    counter: TokenCounter,
    budget: Budget,
    history: Sequence[dict[str, str]] = (),
) -> None:
    """Every promise pack_prompt makes."""
    recount = count_messages(packed.messages, counter)
    assert packed.prompt_tokens == recount
    assert recount <= budget.prompt_tokens == packed.budget
    assert packed.budget_spec == budget
    assert packed.max_completion_tokens == budget.max_completion_tokens
    assert [m["role"] for m in packed.messages] == ["system"] + [t["role"] for t in packed.messages[1:-1]] + ["user"]
    # Earlier turns: the newest ones, whole and in order, opening with a user turn.
    turns = packed.messages[1:-1]
    assert len(turns) == packed.history
    if turns:
        assert turns == list(history[len(history) - len(turns) :]) and turns[0]["role"] == "user"
    assert packed.messages[-1]["content"].endswith(QUESTION_PREFIX + question.strip())
    assert packed.dropped == len(ranked) - len(packed.sources)

    n = len(packed.sources)
    assert [s.chunk.chunk_id for s in packed.sources] == [r.chunk.chunk_id for r in ranked[:n]]
    whole = packed.sources[:-1] if packed.truncated else packed.sources
    assert list(whole) == list(ranked[: len(whole)])
    if packed.truncated:
        last, original = packed.sources[-1].chunk, ranked[n - 1].chunk
        full = original.text.strip()
        assert last.text != full and full.startswith(last.text)
        # The cut is on a sentence boundary.
        assert len(last.text) in {end for _, end in sentence_spans(full)}
        assert counter.count(last.text) >= MIN_CUT_TOKENS
        # Offsets still point at the text in the document.
        assert last.end - last.start == len(last.text)
    for number in range(1, n + 1):
        assert f"[{number}]" in packed.messages[-1]["content"]


# --- budgets -----------------------------------------------------------------


def test_budget_for_defaults() -> None:
    llama = budget_for(CATALOG.get("meta-llama/Llama-3.3-70B-Instruct"))
    assert llama == Budget(context_length=128_000, max_completion_tokens=1024, margin=TEMPLATE_MARGIN)
    assert llama.prompt_tokens == 128_000 - 1024 - TEMPLATE_MARGIN
    # A small model keeps three quarters of its context for the prompt.
    ace = budget_for(CATALOG.get("nvidia/AceMath-7B-Instruct"))
    assert ace.max_completion_tokens == 1000
    assert ace.prompt_tokens == 4000 - 1000 - TEMPLATE_MARGIN


def test_budget_for_clamps_completion_to_the_models_output_cap() -> None:
    model = ModelInfo(id="m", kind="chat", context_length=32_000, tokenizer="qwen", max_output_tokens=512)
    assert budget_for(model, max_completion_tokens=4096).max_completion_tokens == 512
    assert budget_for(model).max_completion_tokens == 512
    assert budget_for(model, max_completion_tokens=100).max_completion_tokens == 100


def test_budget_for_widens_the_margin_by_the_learned_ratio() -> None:
    model = chat_model(100_000)
    plain = budget_for(model, max_completion_tokens=1000)
    wide = budget_for(model, max_completion_tokens=1000, margin_ratio=0.1)
    available = 100_000 - 1000 - TEMPLATE_MARGIN
    assert plain.prompt_tokens == available
    # A full prompt that really costs 10% more than counted still fits.
    assert wide.prompt_tokens * 1.1 <= available
    assert wide.prompt_tokens * 1.1 > available - 2
    # Nonsense ratios are ignored rather than trusted.
    assert budget_for(model, max_completion_tokens=1000, margin_ratio=-1.0) == plain
    assert budget_for(model, max_completion_tokens=1000, margin_ratio=float("nan")) == plain


def test_budget_for_refuses_unknown_context_and_impossible_completions() -> None:
    with pytest.raises(ConfigError, match="context length"):
        budget_for(CATALOG.get("Qwen/Qwen2-VL-7B-Instruct"))
    with pytest.raises(BudgetError, match="left for the prompt"):
        budget_for(chat_model(4000), max_completion_tokens=3950)
    with pytest.raises(ConfigError, match="at least 1"):
        budget_for(chat_model(4000), max_completion_tokens=0)


def test_shrink_budget_takes_off_the_reported_excess_plus_slack() -> None:
    budget = budget_for(chat_model(8000), max_completion_tokens=1000)
    smaller = shrink_budget(budget, 250)
    assert smaller.prompt_tokens == budget.prompt_tokens - 250 - SHRINK_SLACK
    assert smaller.context_length == budget.context_length
    assert smaller.max_completion_tokens == budget.max_completion_tokens
    # A nonsensical excess still shrinks by the slack.
    assert shrink_budget(budget, -5).prompt_tokens == budget.prompt_tokens - SHRINK_SLACK
    with pytest.raises(BudgetError):
        shrink_budget(budget, budget.prompt_tokens)


def test_count_messages_adds_the_documented_overhead() -> None:
    counter = SeamCounter()
    messages = [{"role": "system", "content": "one two"}, {"role": "user", "content": "three"}]
    assert count_messages(messages, counter) == 3 + 2 * MESSAGE_OVERHEAD + REPLY_PRIMING


# --- packing -----------------------------------------------------------------


def test_everything_fits_in_a_large_budget() -> None:
    counter = counter_for_family("llama3")
    ranked = [scored(i, prose(i, 5), title="Guide", headings=("Setup", f"Step {i}")) for i in range(5)]
    budget = budget_for(CATALOG.get("meta-llama/Llama-3.3-70B-Instruct"))
    packed = pack_prompt("How do I set it up?", ranked, counter, budget)
    check_packed(packed, "How do I set it up?", ranked, counter, budget)
    assert packed.sources == ranked
    assert packed.dropped == 0 and not packed.truncated
    system, user = packed.messages
    assert system["content"] == DEFAULT_SYSTEM
    assert user["content"].startswith("Sources:\n\n[1] Guide > Setup > Step 0\n")
    assert user["content"].index("[4]") < user["content"].index("[5]")


def test_no_sources_still_asks_the_question() -> None:
    counter = counter_for_family("llama3")
    budget = budget_for(chat_model(4000))
    packed = pack_prompt("  What is iorag?  ", [], counter, budget)
    assert packed.messages[1]["content"] == NO_SOURCES + QUESTION_PREFIX + "What is iorag?"
    assert packed.sources == [] and packed.dropped == 0 and not packed.truncated


def test_lowest_ranked_chunks_are_dropped_and_the_boundary_chunk_is_cut_at_a_sentence() -> None:
    counter = counter_for_family("llama3")
    ranked = [scored(i, prose(i, 12)) for i in range(10)]
    # Room for two and a half chunks.
    empty = pack_prompt("Which retry policy applies?", [], counter, Budget(100_000, 0, 0)).prompt_tokens
    blocks = counter.count_many([f"[{i + 1}]\n{r.chunk.text}\n\n" for i, r in enumerate(ranked)])
    budget = Budget(context_length=empty + blocks[0] + blocks[1] + blocks[2] // 2, max_completion_tokens=0, margin=0)
    packed = pack_prompt("Which retry policy applies?", ranked, counter, budget)
    check_packed(packed, "Which retry policy applies?", ranked, counter, budget)
    assert len(packed.sources) == 3 and packed.truncated
    assert packed.dropped == 7
    cut = packed.sources[2].chunk
    assert cut.text[-1] in ".!?"
    assert cut.start == 100 and cut.end == 100 + len(cut.text)
    assert cut.text in packed.messages[1]["content"]
    assert ranked[2].chunk.text not in packed.messages[1]["content"]


def test_a_later_small_chunk_is_not_slipped_in_past_one_that_did_not_fit() -> None:
    counter = counter_for_family("llama3")
    big = scored(1, "word " * 2000)  # one long "sentence": cannot be cut
    small = scored(2, "A short chunk that would fit.")
    ranked = [scored(0, prose(0, 3)), big, small]
    budget = budget_for(chat_model(2000), max_completion_tokens=500)
    packed = pack_prompt("q?", ranked, counter, budget)
    check_packed(packed, "q?", ranked, counter, budget)
    assert packed.sources == ranked[:1]
    assert packed.dropped == 2 and not packed.truncated


def test_no_cut_when_less_than_a_meaningful_part_fits() -> None:
    counter = counter_for_family("llama3")
    first = scored(0, prose(0, 6))
    second = scored(1, prose(1, 6))
    base = count_messages(pack_prompt("q?", [], counter, budget_for(chat_model(100_000))).messages, counter)
    first_tokens = counter.count("[1]\n" + first.chunk.text + "\n\n")
    # Leave fewer than MIN_CUT_TOKENS after the first chunk.
    limit = base + first_tokens + MIN_CUT_TOKENS - 5
    budget = Budget(context_length=limit, max_completion_tokens=0, margin=0)
    packed = pack_prompt("q?", [first, second], counter, budget)
    check_packed(packed, "q?", [first, second], counter, budget)
    assert packed.sources == [first] and not packed.truncated and packed.dropped == 1


def test_recount_shrinks_the_prompt_when_joins_cost_extra_tokens() -> None:
    counter = SeamCounter()
    question = "Which retry policy applies?"
    ranked = [scored(i, prose(i, 15)) for i in range(30)]
    budget = Budget(context_length=2000, max_completion_tokens=0, margin=0)
    packed = pack_prompt(question, ranked, counter, budget)
    check_packed(packed, question, ranked, counter, budget)
    # Joining the blocks cost 4 tokens per source that the parts did not show.
    blocks = [f"[{i + 1}]\n{s.chunk.text}\n\n" for i, s in enumerate(packed.sources)]
    parts = counter.count_many(["Sources:\n\n", *blocks, QUESTION_PREFIX + question])
    assert counter.count(packed.messages[1]["content"]) == sum(parts) + 4 * len(packed.sources)
    # The first pass filled the budget by its sum of parts; the recount took
    # the overflow off the last source by cutting it shorter, not dropping it.
    assert packed.truncated
    assert packed.prompt_tokens > budget.prompt_tokens - 40


def test_a_question_that_cannot_fit_is_refused() -> None:
    counter = counter_for_family("llama3")
    budget = budget_for(chat_model(1000), max_completion_tokens=200)
    with pytest.raises(BudgetError, match="question does not fit"):
        pack_prompt("why " * 2000, [scored(0, "x.")], counter, budget)


def test_custom_system_message() -> None:
    counter = counter_for_family("llama3")
    packed = pack_prompt("q?", [scored(0, "A fact.")], counter, budget_for(chat_model(4000)), system="Be terse.")
    assert packed.messages[0] == {"role": "system", "content": "Be terse."}


def test_acemath_prompt_uses_at_least_90_percent_of_its_budget() -> None:
    model = CATALOG.get("nvidia/AceMath-7B-Instruct")
    counter = counter_for(model)
    cl100k = counter_for_family("llama3")
    ranked = []
    for i in range(50):
        sentences = 4
        while cl100k.count(prose(i, sentences)) < 200:
            sentences += 1
        ranked.append(scored(i, prose(i, sentences), title=f"Manual {i}", headings=("Limits",)))
    budget = budget_for(model)
    question = "How does the service keep a prompt within the model context window?"
    packed = pack_prompt(question, ranked, counter, budget)
    check_packed(packed, question, ranked, counter, budget)
    assert packed.dropped > 0
    assert packed.prompt_tokens >= 0.9 * budget.prompt_tokens


@pytest.mark.slow
def test_430k_context_with_500_chunks_is_packed_quickly() -> None:
    model = CATALOG.get("meta-llama/Llama-4-Maverick-17B-128E-Instruct-FP8")
    counter = counter_for(model)
    texts = [prose(seed, 60) for seed in range(40)]  # ~1,000 tokens each
    ranked = [scored(i, texts[i % 40]) for i in range(500)]
    budget = budget_for(model)
    started = time.perf_counter()
    packed = pack_prompt("What limits apply?", ranked, counter, budget)
    elapsed = time.perf_counter() - started
    check_packed(packed, "What limits apply?", ranked, counter, budget)
    assert 0 < packed.dropped < 500
    assert packed.prompt_tokens >= 0.95 * budget.prompt_tokens
    assert elapsed < 10


# --- the budget guarantee, for any input --------------------------------------

_free_text = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)),
    max_size=400,
)
_chunk_texts = st.one_of(
    st.builds(prose, st.integers(0, 10_000), st.integers(1, 25)),
    _free_text,
    st.builds(lambda a, b: a + "\n\n" + b, st.builds(prose, st.integers(0, 999), st.integers(1, 8)), _free_text),
)
_headers = st.tuples(st.text(max_size=30), st.lists(st.text(max_size=20), max_size=3).map(tuple))
_questions = st.one_of(
    st.builds(prose, st.integers(0, 10_000), st.integers(1, 3)),
    _free_text,
)


@settings(deadline=None, max_examples=80, suppress_health_check=[HealthCheck.too_slow])
@given(
    question=_questions,
    chunk_specs=st.lists(st.tuples(_chunk_texts, _headers), max_size=8),
    filler=st.tuples(st.integers(0, 50), st.integers(0, 10_000), st.integers(1, 30)),
    context_length=st.integers(300, 5000),
    completion=st.one_of(st.none(), st.integers(1, 1500)),
    counter_name=st.sampled_from(sorted(COUNTERS)),
    turns=st.lists(st.tuples(st.sampled_from(["user", "assistant"]), _chunk_texts), max_size=6),
)
def test_packed_prompt_never_exceeds_its_budget(
    question: str,
    chunk_specs: list[tuple[str, tuple[str, tuple[str, ...]]]],
    filler: tuple[int, int, int],
    context_length: int,
    completion: int | None,
    counter_name: str,
    turns: list[tuple[str, str]],
) -> None:
    counter = COUNTERS[counter_name]
    # Hypothesis' own texts, mixed in among enough prose to overflow most budgets.
    count, seed, most_sentences = filler
    rng = random.Random(seed)
    specs = chunk_specs + [(prose(seed + i, rng.randint(1, most_sentences)), ("Doc", ())) for i in range(count)]
    rng.shuffle(specs)
    ranked = [scored(i, text, title=title, headings=headings) for i, (text, (title, headings)) in enumerate(specs)]
    try:
        budget = budget_for(chat_model(context_length), max_completion_tokens=completion)
    except BudgetError:
        return  # refused: too little room left for any prompt
    # Earlier turns of a conversation, half the time: they take only the room left over.
    history = [{"role": role, "content": text} for role, text in turns] if seed % 2 else []
    try:
        packed = pack_prompt(question, ranked, counter, budget, history=history)
    except BudgetError:
        # Only when the question alone (nearly) exhausts the budget; the
        # tolerance covers the pre-check's sum-of-parts estimate.
        alone = pack_messages_without_sources(question)
        assert count_messages(alone, counter) > budget.prompt_tokens - 16
        return
    check_packed(packed, question, ranked, counter, budget, history)
    # The turns never displace a source: without them the same sources go in.
    if packed.history:
        assert pack_prompt(question, ranked, counter, budget).sources == packed.sources


@settings(deadline=None, max_examples=15, suppress_health_check=[HealthCheck.too_slow])
@given(
    context_length=st.integers(4000, 430_000),
    seeds=st.lists(st.integers(0, 10_000), min_size=1, max_size=12),
    sentences=st.integers(20, 400),
)
def test_packed_prompt_fits_real_context_lengths(context_length: int, seeds: list[int], sentences: int) -> None:
    counter = counter_for_family("qwen")
    ranked = [scored(i, prose(seed, sentences)) for i, seed in enumerate(seeds)]
    budget = budget_for(chat_model(context_length, "qwen"))
    packed = pack_prompt("Which limits apply?", ranked, counter, budget)
    check_packed(packed, "Which limits apply?", ranked, counter, budget)


def pack_messages_without_sources(question: str) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": DEFAULT_SYSTEM},
        {"role": "user", "content": NO_SOURCES + QUESTION_PREFIX + question.strip()},
    ]


# --- learning the counter's error ---------------------------------------------


def test_tracker_starts_at_zero_and_learns_an_under_count() -> None:
    tracker = TokenRatioTracker(extra=0.02)
    assert tracker.margin_ratio("m") == 0.0
    tracker.observe("m", counted=1000, actual=1000 + TEMPLATE_MARGIN + 100)
    assert tracker.margin_ratio("m") == pytest.approx(0.12)
    # Other models are unaffected.
    assert tracker.margin_ratio("other") == 0.0


def test_tracker_ignores_over_counts_and_short_prompts() -> None:
    tracker = TokenRatioTracker(min_counted=256)
    tracker.observe("m", counted=1000, actual=900)
    assert tracker.margin_ratio("m") == 0.0
    tracker.observe("m", counted=100, actual=400)  # fixed template overhead, not a ratio
    assert tracker.margin_ratio("m") == 0.0
    tracker.observe("m", counted=1000, actual=0)
    assert tracker.margin_ratio("m") == 0.0


def test_tracker_caps_the_margin_and_forgets_old_observations() -> None:
    tracker = TokenRatioTracker(window=3, max_margin=0.5, extra=0.0)
    tracker.observe("m", counted=1000, actual=5000)
    assert tracker.margin_ratio("m") == 0.5
    for _ in range(3):
        tracker.observe("m", counted=1000, actual=1000 + TEMPLATE_MARGIN + 50)
    assert tracker.margin_ratio("m") == pytest.approx(0.05)


def test_tracker_is_safe_to_share_between_threads() -> None:
    tracker = TokenRatioTracker(window=10_000, extra=0.0)

    def feed(worker: int) -> None:
        for i in range(500):
            tracker.observe(f"m{worker % 2}", counted=1000, actual=1000 + TEMPLATE_MARGIN + (i % 100))
            tracker.margin_ratio(f"m{worker % 2}")

    threads = [threading.Thread(target=feed, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert tracker.margin_ratio("m0") == pytest.approx(0.099)
    assert tracker.margin_ratio("m1") == pytest.approx(0.099)


def test_learned_margin_feeds_budget_for() -> None:
    tracker = TokenRatioTracker(extra=0.0)
    tracker.observe("test/chat", counted=10_000, actual=11_000 + TEMPLATE_MARGIN)
    budget = budget_for(chat_model(64_000), max_completion_tokens=1000, margin_ratio=tracker.margin_ratio("test/chat"))
    # A full prompt under-counted by 10% (plus the template margin) still fits the context.
    assert budget.prompt_tokens * 1.1 + TEMPLATE_MARGIN + budget.max_completion_tokens <= 64_000


def test_earlier_turns_fill_the_room_left_newest_first() -> None:
    counter = counter_for_family("llama3")
    ranked = [scored(i, prose(i, 3)) for i in range(2)]
    history = [
        {"role": "user", "content": "How are quotas refreshed?"},
        {"role": "assistant", "content": prose(50, 40)},
        {"role": "user", "content": "And what happens to indexing then?"},
        {"role": "assistant", "content": "It stops with exit status 3 [1]."},
    ]
    roomy = pack_prompt("And after that?", ranked, counter, budget_for(chat_model(100_000)), history=history)
    assert roomy.messages[1:-1] == history and roomy.history == 4 and len(roomy.sources) == 2
    # Room for the last two turns only: the long assistant turn and the one before it stay out.
    needed = count_messages(pack_prompt("And after that?", ranked, counter, budget_for(chat_model(100_000))).messages, counter)
    tail = sum(counter.count(t["content"]) + MESSAGE_OVERHEAD for t in history[2:])
    tight = Budget(context_length=needed + tail + 5 + 100, max_completion_tokens=100, margin=0)
    packed = pack_prompt("And after that?", ranked, counter, tight, history=history)
    assert packed.messages[1:-1] == history[2:] and len(packed.sources) == 2
    check_packed(packed, "And after that?", ranked, counter, tight, history)
