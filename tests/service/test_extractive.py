"""Extractive answers pick the right sentences and cite them; citations are read back."""

from __future__ import annotations

import random
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from indexer.models import Chunk, ScoredChunk
from indexer.text import sentence_spans
from service.citations import cited_numbers, map_citations
from service.extractive import (
    NO_MATCH_NOTE,
    NO_SOURCES_TEXT,
    ExtractiveAnswer,
    extractive_answer,
)

PASSAGES = [
    (
        "Installation",
        "iorag runs on Python 3.11 or newer. Install it with `pip install iorag`. "
        "The first run downloads nothing: the embedding model ships inside a wheel.",
    ),
    (
        "Rate limits",
        "The API answers 429 when too many requests arrive at once. iorag then waits and retries "
        "with exponential backoff. When every retry fails, a RateLimitError is raised.",
    ),
    (
        "Quotas",
        "Quotas are credit pools that refresh every 8 or 24 hours. When a quota is exhausted, "
        "indexing pauses until the refresh. Rerunning the index command resumes where it stopped.",
    ),
    (
        "Embedding models",
        "BAAI/bge-multilingual-gemma2 accepts up to 4,096 tokens per input. "
        "mxbai-embed-large-v1 accepts at most 512 tokens.\n"
        "Queries to bge-multilingual-gemma2 carry an instruction prefix.",
    ),
]


def source(i: int, text: str, title: str = "") -> ScoredChunk:
    chunk = Chunk(chunk_id=f"c{i}", doc_id=f"d{i}", ordinal=0, text=text, start=0, end=len(text), tokens=0, title=title)
    return ScoredChunk(chunk=chunk, score=1.0 - i / 100)


SOURCES = [source(i, text, title) for i, (title, text) in enumerate(PASSAGES)]


@pytest.mark.parametrize(
    ("question", "sentence", "number"),
    [
        ("How often do quotas refresh?", "Quotas are credit pools that refresh every 8 or 24 hours.", 3),
        ("What happens when the API returns 429?", "The API answers 429 when too many requests arrive at once.", 2),
        ("How many tokens does mxbai-embed-large-v1 accept?", "mxbai-embed-large-v1 accepts at most 512 tokens.", 4),
        ("Which Python version do I need?", "iorag runs on Python 3.11 or newer.", 1),
        ("What happens when the quota is exhausted?", "When a quota is exhausted, indexing pauses until the refresh.", 3),
        ("How do I install iorag?", "Install it with `pip install iorag`.", 1),
        ("Do queries to bge-multilingual-gemma2 need a prefix?", "Queries to bge-multilingual-gemma2 carry an instruction prefix.", 4),
    ],
)
def test_the_best_sentence_is_picked_and_cited(question: str, sentence: str, number: int) -> None:
    best = extractive_answer(question, SOURCES, max_sentences=1)
    assert best == ExtractiveAnswer(text=f"{sentence} [{number}]", cited=[number - 1])
    # With more room it is still there, still cited by its own source.
    full = extractive_answer(question, SOURCES)
    assert f"{sentence} [{number}]" in full.text
    assert number - 1 in full.cited


def test_citations_in_the_text_match_cited() -> None:
    answer = extractive_answer("What happens when a quota is exhausted or every retry fails?", SOURCES)
    assert answer.cited == map_citations(answer.text, SOURCES)
    # Every sentence carries a citation right after it.
    assert answer.text.endswith("]")
    assert answer.text.count("[") == len(sentence_spans(re.sub(r" \[\d+\]", "", answer.text)))


def test_the_best_sentence_comes_first_then_close_runners_up() -> None:
    first = source(0, "The alpha particle is heavy. Unrelated filler text here. The gamma ray is light.")
    second = source(1, "A gamma ray and an alpha particle both ionize.")
    answer = extractive_answer("alpha particle and gamma ray", [first, second], max_sentences=3)
    # The second source's sentence names both: it leads; while the answer is short,
    # sentences naming half of it follow, best first. Filler never does.
    assert answer.text == (
        "A gamma ray and an alpha particle both ionize. [2] The alpha particle is heavy. [1] The gamma ray is light. [1]"
    )
    assert answer.cited == [1, 0]
    close = extractive_answer("alpha particle", [first, second], max_sentences=3)
    assert close.text == "The alpha particle is heavy. [1] A gamma ray and an alpha particle both ionize. [2]"
    assert "filler" not in close.text


def test_near_duplicate_sentences_appear_once() -> None:
    repeated = "Quotas are credit pools that refresh every 8 or 24 hours."
    sources = [
        source(0, repeated + " Other words entirely."),
        source(1, "Quotas are credit pools that refresh every 8 or 24 hours!"),
        source(2, "QUOTAS are credit pools that refresh every 8 or 24 hours."),
    ]
    answer = extractive_answer("When do quotas refresh?", sources, max_sentences=3)
    assert answer.text == f"{repeated} [1]"
    assert answer.cited == [0]


def test_no_sources() -> None:
    assert extractive_answer("anything?", []) == ExtractiveAnswer(text=NO_SOURCES_TEXT, cited=[])
    assert extractive_answer("anything?", [source(0, "  \n ---\n")]) == ExtractiveAnswer(text=NO_SOURCES_TEXT, cited=[])


def test_no_overlap_falls_back_to_the_top_source() -> None:
    answer = extractive_answer("zebra giraffe?", SOURCES)
    assert answer.text == f"{NO_MATCH_NOTE} iorag runs on Python 3.11 or newer. [1]"
    assert answer.cited == [0]
    # A question made only of stopwords overlaps nothing either.
    assert extractive_answer("what is it?", SOURCES).cited == [0]


def test_long_sentences_respect_max_chars() -> None:
    long = "Retries " + "back off exponentially and " * 60 + "stop eventually."
    answer = extractive_answer("How do retries back off?", [source(0, long), source(1, "Retries back off.")], max_chars=200)
    assert len(answer.text) <= 200
    assert answer.text.endswith("[1]") or answer.text.endswith("[2]")


def test_deterministic() -> None:
    question = "How are rate limits and quotas handled?"
    assert extractive_answer(question, SOURCES) == extractive_answer(question, SOURCES)


def test_fifty_long_sources_give_a_short_cited_answer() -> None:
    rng = random.Random(7)
    words = "index chunk token budget quota retry model prompt answer source vector search".split()
    sources = [
        source(i, " ".join(" ".join(rng.choice(words) for _ in range(18)).capitalize() + "." for _ in range(12)))
        for i in range(50)
    ]
    answer = extractive_answer("How is the token budget of a prompt kept?", sources)
    assert 1 <= len(answer.cited) <= 3 and len(answer.text) <= 600
    assert answer.cited == map_citations(answer.text, sources)


_plain = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",), exclude_characters="[]"), max_size=200)


@settings(deadline=None, max_examples=150)
@given(question=_plain, texts=st.lists(_plain, max_size=8), max_sentences=st.integers(1, 5))
def test_any_input_gets_an_answer_whose_citations_are_real(question: str, texts: list[str], max_sentences: int) -> None:
    sources = [source(i, text) for i, text in enumerate(texts)]
    answer = extractive_answer(question, sources, max_sentences=max_sentences)
    assert answer.text
    assert answer.cited == map_citations(answer.text, sources)
    assert len(answer.cited) <= max_sentences
    assert answer == extractive_answer(question, sources, max_sentences=max_sentences)


# --- sentence splitting --------------------------------------------------------


def _sentences(text: str) -> list[str]:
    return [text[s:e] for s, e in sentence_spans(text)]


def test_sentence_spans_split_on_punctuation_and_lines() -> None:
    text = "Hello world. Is it e.g. a test? Dr. Who met J. Smith!\n# Heading\n1. First item\n- bullet  \n\nEnd"
    assert _sentences(text) == [
        "Hello world.",
        "Is it e.g. a test?",
        "Dr. Who met J. Smith!",
        "# Heading",
        "1. First item",
        "- bullet",
        "End",
    ]


def test_sentence_spans_keep_closing_quotes_and_cjk() -> None:
    assert _sentences('He said "stop." Then left. Pi is 3.14 exactly.') == [
        'He said "stop."',
        "Then left.",
        "Pi is 3.14 exactly.",
    ]
    assert _sentences("第一句。第二句！") == ["第一句。", "第二句！"]


@settings(deadline=None, max_examples=200)
@given(st.text(alphabet=st.sampled_from(list("ab .!?\n\t\"')1。")), max_size=80) | st.text(max_size=80))
def test_sentence_spans_are_ordered_stripped_and_cover_all_words(text: str) -> None:
    spans = sentence_spans(text)
    previous = 0
    for start, end in spans:
        assert previous <= start < end <= len(text)
        assert text[start:end] == text[start:end].strip()
        previous = end
    # Nothing but whitespace is left outside the spans.
    outside = list(text)
    for start, end in spans:
        outside[start:end] = [" "] * (end - start)
    assert not "".join(outside).strip()


# --- citations -----------------------------------------------------------------
# (citations.py has no test module of its own yet; these belong in test_citations.py.)


@pytest.mark.parametrize(
    ("answer", "numbers"),
    [
        ("Paris [1].", [1]),
        ("A [2] and B [1][2].", [2, 1]),
        ("Both [1, 3] say so; see also [3;4].", [1, 3, 4]),
        ("Ranges [2-4] and [6–5].", [2, 3, 4, 6, 5]),
        ("Spaced [ 7 ] works.", [7]),
        ("Nothing cited, [a] [] [x1] [1.5].", []),
        ("Zero [0] is not a source; years [1900-2024] are not a citation.", []),
    ],
)
def test_cited_numbers(answer: str, numbers: list[int]) -> None:
    assert cited_numbers(answer) == numbers


def test_map_citations_drops_out_of_range_numbers() -> None:
    assert map_citations("X [3] Y [1] Z [9] W [3].", SOURCES) == [2, 0]
    assert map_citations("[1]", []) == []


def test_the_sentence_after_a_matching_question_answers_it() -> None:
    from indexer.models import Chunk, ScoredChunk

    faq = (
        "How do I reset my password?\nOpen the account page and choose a new one.\n\n"
        "What happens when the API answers 429?\nThe client waits with backoff and tries again later."
    )
    chunk = Chunk(chunk_id="faq", doc_id="faq", ordinal=0, text=faq, start=0, end=len(faq), tokens=40)
    other_text = "Status codes are listed in the reference."
    other = Chunk(chunk_id="o", doc_id="o", ordinal=0, text=other_text, start=0, end=len(other_text), tokens=9)
    answer = extractive_answer("What happens on a 429 from the API?", [ScoredChunk(chunk, 1.0), ScoredChunk(other, 0.5)])
    assert answer.text.startswith("The client waits with backoff and tries again later. [1]")
    assert "?" not in answer.text
