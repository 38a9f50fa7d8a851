"""Tests for indexer.chunking: limits, offsets, coverage, ids and structure."""

from __future__ import annotations

from typing import Sequence

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from indexer.catalog import default_catalog
from indexer.chunking import ChunkingConfig, chunk_document, fits
from indexer.errors import ChunkingError, ConfigError
from indexer.models import Chunk, Document, make_chunk_id
from indexer.tokens import SpanCounts, TokenCounter, counter_for

WORDPIECE = counter_for(default_catalog().get("local/all-MiniLM-L6-v2"))
GEMMA = counter_for(default_catalog().get("BAAI/bge-multilingual-gemma2"))

class HostileCounter:
    """A made-up tokenizer that breaks the chunker's estimates on purpose.

    Line breaks cost tokens (so sums of pieces undercount joined text) and
    lengths divisible by 5 cost 3 more (so counts are not monotone): only
    the verification and repair paths keep chunks under the limit.
    """

    name = "hostile"
    exact = True

    def count(self, text: str) -> int:
        return 1 + -(-len(text) // 4) + 2 * text.count("\n") + (3 if len(text) % 5 == 0 else 0)

    def count_many(self, texts: Sequence[str]) -> list[int]:
        return [self.count(t) for t in texts]


HOSTILE = HostileCounter()

#: (counter, config) pairs the property tests run under: the exact counter at the
#: real limit and at small ones, and the estimating counter at small limits.
SETUPS = [
    pytest.param(WORDPIECE, ChunkingConfig(256), id="wordpiece-256"),
    pytest.param(WORDPIECE, ChunkingConfig(16), id="wordpiece-16"),
    pytest.param(WORDPIECE, ChunkingConfig(32, overlap=8), id="wordpiece-32-overlap"),
    pytest.param(WORDPIECE, ChunkingConfig(64, overlap=10, target_tokens=40), id="wordpiece-64-target"),
    pytest.param(GEMMA, ChunkingConfig(16), id="gemma-16"),
    pytest.param(GEMMA, ChunkingConfig(48, overlap=12), id="gemma-48-overlap"),
    pytest.param(HOSTILE, ChunkingConfig(20), id="hostile-20"),
    pytest.param(HOSTILE, ChunkingConfig(64, overlap=15, target_tokens=48), id="hostile-64-overlap"),
]


def check_chunks(doc: Document, counter: TokenCounter, config: ChunkingConfig, chunks: list[Chunk]) -> None:
    """Every invariant chunk_document promises."""
    text = doc.text
    base = counter.count("")
    for ordinal, chunk in enumerate(chunks):
        assert chunk.ordinal == ordinal
        assert chunk.doc_id == doc.id
        assert chunk.tokens <= config.max_tokens
        assert chunk.tokens == counter.count(chunk.embedding_text)
        assert text[chunk.start : chunk.end] == chunk.text
        assert chunk.text and chunk.text == chunk.text.strip()
        # The title may be shortened, never replaced.
        assert doc.title.startswith(chunk.title)
    assert len({c.chunk_id for c in chunks}) == len(chunks)

    covered = bytearray(len(text))
    for chunk in chunks:
        covered[chunk.start : chunk.end] = b"\x01" * (chunk.end - chunk.start)
    missed = [i for i, flag in enumerate(covered) if not flag and not text[i].isspace()]
    assert not missed, f"uncovered characters at {missed[:10]}"

    for previous, chunk in zip(chunks, chunks[1:]):
        assert chunk.start > previous.start and chunk.end > previous.end
        shared = previous.end - chunk.start
        if shared > 0:
            assert config.overlap > 0, "chunks overlap without overlap configured"
            assert counter.count(text[chunk.start : previous.end]) - base <= config.overlap


# -- property tests -------------------------------------------------------------------

_WORDS = st.sampled_from(
    ["alpha", "beta", "Gamma", "photosynthesis", "x", "déjà", "naïve", "über", "e.g.", "3.14"]
)
_FRAGMENTS = st.one_of(
    st.text(max_size=80),
    st.lists(_WORDS, min_size=1, max_size=60).map(" ".join),
    st.tuples(
        st.lists(_WORDS, min_size=1, max_size=12), st.sampled_from([". ", "! ", "? ", '." ', "。"])
    ).map(lambda t: " ".join(t[0]) + t[1]),
    st.integers(1, 600).map(lambda n: "7" * n),
    st.text(alphabet="0123456789", min_size=1, max_size=300),
    st.text(alphabet=st.characters(min_codepoint=0x4E00, max_codepoint=0x9FFF), min_size=1, max_size=200),
    st.lists(st.sampled_from(["😀", "👍🏽", "👨‍👩‍👧", "🇫🇷", "❤️", "🧪"]), min_size=1, max_size=100).map(
        "".join
    ),
    st.integers(1, 120).map(lambda n: "e\u0301" * n),
    st.integers(1, 40).map(lambda n: "a" + "\u0308\u0323" * n),
    st.integers(1, 3000).map(lambda n: "x" * n),
    st.tuples(st.integers(1, 7), st.lists(_WORDS, max_size=8)).map(
        lambda t: "\n" + "#" * t[0] + " " + " ".join(t[1]) + "\n"
    ),
    st.integers(1, 20).map(lambda n: "| col a | col b | 12.5 |\n|---|---|---|\n" + "| 1 | two | 3.0 |\n" * n),
    st.sampled_from(["\n\n", "\n", "  ", "\t", "\r\n", "```\n", "。", "！", ". ", "? ", "\u200b", " \n \n "]),
)


_DOCUMENTS = st.builds(
    lambda parts, title: Document(id="doc", text="".join(parts), title=title),
    st.lists(_FRAGMENTS, max_size=25),
    st.one_of(st.just(""), st.text(max_size=40), st.lists(_WORDS, max_size=300).map(" ".join)),
)


@pytest.mark.parametrize(("counter", "config"), SETUPS)
@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
@given(doc=_DOCUMENTS)
def test_adversarial_text_keeps_every_invariant(
    counter: TokenCounter, config: ChunkingConfig, doc: Document
) -> None:
    chunks = chunk_document(doc, counter, config)
    check_chunks(doc, counter, config, chunks)
    assert chunk_document(doc, counter, config) == chunks  # deterministic
    assert (chunks == []) == (doc.text.strip() == "")


@settings(max_examples=60, deadline=None)
@given(text=st.text(max_size=400), max_tokens=st.integers(8, 40))
def test_any_unicode_at_any_small_limit(text: str, max_tokens: int) -> None:
    doc = Document(id="d", text=text, title="A title")
    for counter in (WORDPIECE, GEMMA):
        config = ChunkingConfig(max_tokens)
        check_chunks(doc, counter, config, chunk_document(doc, counter, config))


# -- long single lines ----------------------------------------------------------------


class CountingCounter:
    """Wraps a counter and records what it is asked to count: calls and characters."""

    def __init__(self, inner: TokenCounter) -> None:
        self.inner = inner
        self.name, self.exact = inner.name, inner.exact
        self.calls = 0
        self.characters = 0
        self.longest = 0

    def _record(self, lengths: list[int]) -> None:
        self.calls += 1
        self.characters += sum(lengths)
        self.longest = max([self.longest, *lengths])

    def count(self, text: str) -> int:
        return self.count_many([text])[0]

    def count_many(self, texts: Sequence[str]) -> list[int]:
        self._record([len(t) for t in texts])
        return self.inner.count_many(texts)

    def span_counts(self, text: str, spans: Sequence[tuple[int, int]]) -> SpanCounts:
        self._record([b - a for a, b in spans])
        return WORDPIECE.span_counts(text, spans)  # type: ignore[attr-defined]


@pytest.mark.slow
@pytest.mark.parametrize(
    "text",
    [
        pytest.param("x" * 1_000_000, id="one-letter"),
        pytest.param("1234567890" * 100_000, id="digits"),
        pytest.param("漢字😀é" * 250_000, id="cjk-emoji-combining"),
        pytest.param("lorem ipsum dolor sit amet " * 37_000, id="words-no-punctuation"),
    ],
)
def test_one_megabyte_line(text: str) -> None:
    doc = Document(id="big", text=text, title="Big")
    config = ChunkingConfig(256)
    counter = CountingCounter(WORDPIECE)
    chunks = chunk_document(doc, counter, config)
    check_chunks(doc, WORDPIECE, config, chunks)
    # Linear work, whatever the text: no count looks at more than a chunk's character cap
    # (32 per token) plus the header, a handful of counts find each cut, and all of them
    # together read the text a few times at most. A quadratic search would count the
    # growing prefix again and again.
    assert counter.longest <= 32 * config.max_tokens + len("Big\n\n")
    assert counter.calls <= 4 * len(chunks) + 8
    assert counter.characters <= 4 * len(text)


# -- structure ------------------------------------------------------------------------


def test_heading_paths_follow_the_outline() -> None:
    text = (
        "Preface text.\n\n"
        "# A\n\nText a.\n\n"
        "## B\n\nText b.\n\n"
        "```\n# not a heading, code\n```\n\n"
        "### C ###\n\nText c.\n\n"
        "## D\n\nText d.\n\n"
        "#hashtag is not a heading\n\n"
        "# E\n\nText e."
    )
    doc = Document(id="outline", text=text, title="Guide")
    chunks = chunk_document(doc, WORDPIECE, ChunkingConfig(256))
    assert [c.headings for c in chunks] == [(), ("A",), ("A", "B"), ("A", "B", "C"), ("A", "D"), ("E",)]
    assert [c.header for c in chunks][:3] == ["Guide", "Guide > A", "Guide > A > B"]
    # The heading line opens its section's first chunk, so it is covered.
    assert chunks[1].text == "# A\n\nText a."
    assert "# not a heading" in chunks[2].text
    assert "#hashtag" in chunks[4].text
    assert all(c.title == "Guide" for c in chunks)


def _paragraph(index: int, words: int = 30) -> str:
    return " ".join(f"word{index}x{i}" if i % 5 == 0 else "plain" for i in range(words)) + "."


def test_paragraphs_are_packed_whole() -> None:
    paragraphs = [_paragraph(i, words=25 + 7 * (i % 3)) for i in range(12)]
    doc = Document(id="packing", text="\n\n".join(paragraphs), title="")
    config = ChunkingConfig(128)
    chunks = chunk_document(doc, WORDPIECE, config)
    check_chunks(doc, WORDPIECE, config, chunks)
    assert 1 < len(chunks) < len(paragraphs)
    for chunk in chunks:
        assert all(part in paragraphs for part in chunk.text.split("\n\n"))
    # Greedy: the next paragraph would not have fitted into the chunk before it.
    for chunk, following in zip(chunks, chunks[1:]):
        first_next = following.text.split("\n\n")[0]
        assert WORDPIECE.count(chunk.text + "\n\n" + first_next) > config.max_tokens


def test_a_long_paragraph_is_cut_at_sentence_ends() -> None:
    sentences = [f"Sentence number {i} talks about topic {i % 7} at some length here." for i in range(60)]
    doc = Document(id="sentences", text=" ".join(sentences), title="Sentences")
    config = ChunkingConfig(64)
    chunks = chunk_document(doc, WORDPIECE, config)
    check_chunks(doc, WORDPIECE, config, chunks)
    assert len(chunks) > 5
    assert all(c.text.startswith("Sentence number") and c.text.endswith(".") for c in chunks)


def test_overlap_repeats_whole_sentences_within_budget() -> None:
    sentences = [f"Fact {i} is short." for i in range(80)]
    doc = Document(id="overlap", text=" ".join(sentences), title="")
    config = ChunkingConfig(48, overlap=12)
    chunks = chunk_document(doc, WORDPIECE, config)
    check_chunks(doc, WORDPIECE, config, chunks)
    shared = [prev.end - nxt.start for prev, nxt in zip(chunks, chunks[1:])]
    assert all(s > 0 for s in shared), "every chunk should repeat a sentence of the one before"
    assert all(c.text.startswith("Fact ") for c in chunks)


def test_no_overlap_across_sections() -> None:
    body = " ".join(f"Point {i} is made." for i in range(30))
    doc = Document(id="sections", text=f"# One\n\n{body}\n\n# Two\n\n{body}", title="")
    config = ChunkingConfig(40, overlap=10)
    chunks = chunk_document(doc, WORDPIECE, config)
    check_chunks(doc, WORDPIECE, config, chunks)
    boundary = doc.text.index("# Two")
    assert not any(c.start < boundary < c.end for c in chunks)


def test_target_tokens_makes_smaller_chunks() -> None:
    doc = Document(id="target", text=" ".join(f"Claim {i} holds in general." for i in range(200)), title="")
    big = chunk_document(doc, WORDPIECE, ChunkingConfig(256))
    small_config = ChunkingConfig(256, target_tokens=64)
    small = chunk_document(doc, WORDPIECE, small_config)
    check_chunks(doc, WORDPIECE, small_config, small)
    assert len(small) > 3 * len(big)
    assert max(c.tokens for c in small) <= 64


# -- ids ------------------------------------------------------------------------------


def test_ids_of_untouched_passages_survive_an_edit_elsewhere() -> None:
    sections = [
        f"# Part {i}\n\n" + "\n\n".join(_paragraph(10 * i + j, words=40) for j in range(4)) for i in range(3)
    ]
    config = ChunkingConfig(72)
    before = chunk_document(Document(id="d", text="\n\n".join(sections), title="T"), WORDPIECE, config)
    edited = sections[1].replace("plain", "changed", 3)
    after = chunk_document(
        Document(id="d", text="\n\n".join([sections[0], edited, sections[2]]), title="T"), WORDPIECE, config
    )

    def ids(chunks: list[Chunk], heading: str) -> list[str]:
        return [c.chunk_id for c in chunks if c.headings == (heading,)]

    assert ids(before, "Part 0") == ids(after, "Part 0")
    assert ids(before, "Part 2") == ids(after, "Part 2")
    assert ids(before, "Part 1") != ids(after, "Part 1")
    # Within the edited section, paragraphs that are chunks of their own keep their ids too.
    unchanged = {c.chunk_id for c in before if c.headings == ("Part 1",)} & {c.chunk_id for c in after}
    assert len(unchanged) >= 2


def test_repeated_text_gets_distinct_stable_ids() -> None:
    boilerplate = "All rights reserved."
    text = "\n\n".join(f"# S{i}\n\nBody {i} text.\n\n{boilerplate}" for i in range(3))
    doc = Document(id="repeat", text=text, title="")
    chunks = chunk_document(doc, WORDPIECE, ChunkingConfig(12))
    repeated = [c for c in chunks if c.text == boilerplate]
    assert len(repeated) == 3
    assert [c.chunk_id for c in repeated] == [make_chunk_id("repeat", boilerplate, k) for k in range(3)]


# -- headers, limits, errors ----------------------------------------------------------


def test_long_header_is_shortened_but_text_is_not() -> None:
    title = " ".join(["extraordinarily"] * 400)
    headings = "".join(
        "#" * level + f" Heading level {level} with several words\n\n" for level in range(1, 7)
    )
    doc = Document(id="header", text=headings + "The body sentence.", title=title)
    config = ChunkingConfig(64)
    chunks = chunk_document(doc, WORDPIECE, config)
    check_chunks(doc, WORDPIECE, config, chunks)
    base = WORDPIECE.count("")
    for chunk in chunks:
        assert WORDPIECE.count(chunk.header + "\n\n") - base <= config.max_tokens // 4
    assert chunks[-1].text.endswith("The body sentence.")
    assert len(chunks[-1].title) < len(title)


def test_inner_headings_go_first() -> None:
    doc = Document(
        id="inner",
        text="# Outer\n\n## " + "Very long inner heading " * 10 + "\n\nBody.",
        title="T",
    )
    chunks = chunk_document(doc, WORDPIECE, ChunkingConfig(64))
    assert chunks[-1].headings == ("Outer",)
    assert chunks[-1].title == "T"


def test_limit_too_small_for_one_character() -> None:
    doc = Document(id="tiny-limit", text="Some text.", title="")
    with pytest.raises(ChunkingError, match="tiny-limit"):
        chunk_document(doc, WORDPIECE, ChunkingConfig(2))  # [CLS] and [SEP] alone take 2


def test_unpaired_surrogate_is_a_chunking_error() -> None:
    with pytest.raises(ChunkingError, match="surrogate"):
        chunk_document(Document(id="s", text="a\ud800b", title=""), WORDPIECE, ChunkingConfig(32))


@pytest.mark.parametrize("text", ["", "   ", "\n\n\t \n", " " * 100_000])
def test_blank_documents_have_no_chunks(text: str) -> None:
    assert chunk_document(Document(id="blank", text=text, title="T"), WORDPIECE, ChunkingConfig(32)) == []


def test_combining_marks_stay_with_their_letter() -> None:
    doc = Document(id="marks", text="e\u0301" * 400, title="")
    config = ChunkingConfig(16)
    chunks = chunk_document(doc, GEMMA, config)
    check_chunks(doc, GEMMA, config, chunks)
    assert len(chunks) > 1
    assert all(not c.text.startswith("\u0301") for c in chunks)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_tokens": 0},
        {"max_tokens": 100, "overlap": 50},
        {"max_tokens": 100, "overlap": -1},
        {"max_tokens": 100, "target_tokens": 101},
        {"max_tokens": 100, "target_tokens": 0},
    ],
)
def test_config_rejects_impossible_settings(kwargs: dict[str, int]) -> None:
    with pytest.raises(ConfigError):
        ChunkingConfig(**kwargs)


def test_fits() -> None:
    assert fits("hello world", WORDPIECE, 4)
    assert not fits("hello world", WORDPIECE, 3)
