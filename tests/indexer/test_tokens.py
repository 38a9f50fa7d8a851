"""Tests for indexer.tokens: the counters' fast paths count exactly what the tokenizers count."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from indexer import tokens
from indexer.tokens import FAMILIES, EstimatingCounter, WordPieceCounter, load_cl100k, load_wordpiece

#: Python whitespace (what str.split() splits at), the characters BERT's normalizer deletes or
#: keeps around it, and the kinds of text the pre-tokenizer treats specially.
_TRICKY = (
    [chr(c) for c in range(0x110000) if chr(c).isspace()]
    + ["\x00", "\x01", "\x7f", "\ufffd", "\u200b", "\u200d", "\ufeff", "\u00ad"]  # control and format
    + ["\u0301", "\u0308", "\u0323", "e\u0301", "\u00e9", "\u0130", "\u03a3", "\u00df", "\ufb01"]  # marks, case
    + ["漢", "字", "。", "！", "\u3000", "한", "\u1100\u1161", "😀", "👨‍👩‍👧", "🇫🇷"]  # CJK, Hangul, emoji
    + [".", ",", "-", "_", "#", "'", '"', "(", ")", "$", "…", "«", "»", "¿", "§"]  # punctuation
    + ["un", "able", "unable", "photosynthesis", "Gamma", "x", "7", "123456", "3.14", "e.g."]
)
_TEXTS = st.one_of(
    st.text(max_size=120),
    st.lists(st.sampled_from(_TRICKY), max_size=60).map("".join),
    # Words longer than WordPiece's 100-character limit, and pieces past the cached length.
    st.tuples(st.integers(1, 150), st.sampled_from(["a", "ab", "é", "漢", "1"])).map(lambda t: t[1] * t[0]),
)


def _encoded(text: str) -> int:
    """The tokenizer's own count, [CLS] and [SEP] included: the truth the counter must match."""
    return len(load_wordpiece().encode(text).ids)


@settings(max_examples=400, deadline=None)
@given(texts=st.lists(_TEXTS, min_size=1, max_size=6))
def test_wordpiece_counts_equal_whole_encodes(texts: list[str]) -> None:
    counter = WordPieceCounter()
    expected = [_encoded(t) for t in texts]
    assert counter.count_many(texts) == expected
    # Again, now from remembered pieces; and one at a time.
    assert counter.count_many(texts) == expected
    assert [counter.count(t) for t in texts] == expected


@settings(max_examples=100, deadline=None)
@given(parts=st.lists(_TEXTS, min_size=2, max_size=5), gap=st.sampled_from(_TRICKY[:29]))
def test_wordpiece_counts_hold_across_every_kind_of_whitespace(parts: list[str], gap: str) -> None:
    # The deleted "whitespace" (vertical tab, information separators, NEL) joins words.
    text = gap.join(parts)
    assert WordPieceCounter().count(text) == _encoded(text)


def test_wordpiece_memory_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tokens, "_PIECE_CACHE_SIZE", 8)
    counter = WordPieceCounter()
    texts = [f"word{i} other{i} {'z' * 80}{i}" for i in range(30)]
    assert counter.count_many(texts) == [_encoded(t) for t in texts]
    assert [counter.count(t) for t in texts] == [_encoded(t) for t in texts]
    # Past the bound the memory starts again: never more than the bound plus one call's pieces.
    assert len(counter._pieces) <= 8 + 3


def test_wordpiece_base_is_cls_and_sep() -> None:
    assert WordPieceCounter().base == _encoded("") == 2


@pytest.mark.parametrize("family", sorted(FAMILIES))
@settings(max_examples=30, deadline=None)
@given(texts=st.lists(_TEXTS, max_size=3))
def test_estimates_are_the_same_one_by_one_and_in_threaded_batches(family: str, texts: list[str]) -> None:
    counter = EstimatingCounter(FAMILIES[family])
    one_by_one = [counter.count(t) for t in texts]
    assert counter.count_many(texts) == one_by_one
    many = texts * (tokens._THREADED_BATCH // max(1, len(texts)) + 1)
    assert counter.count_many(many) == [counter.count(t) for t in many]
    encoding = load_cl100k()
    assert all(n >= len(encoding.encode_ordinary(t)) for n, t in zip(one_by_one, texts))


# -- span counts: chunk counts added up from sentence counts --------------------------


@st.composite
def _texts_with_spans(draw: st.DrawFn) -> tuple[str, list[tuple[int, int]]]:
    """A text of pieces joined by gaps of any whitespace (or none), and the pieces' spans."""
    pieces = draw(st.lists(_TEXTS.filter(lambda t: t != "" and not t[0].isspace() and not t[-1].isspace()),
                           min_size=1, max_size=8))
    gaps = draw(st.lists(st.sampled_from(["", " ", "\n\n", "\x1c", " \x85 ", "\u3000", "\x0b\t", "\r\n"]),
                         min_size=len(pieces) - 1, max_size=len(pieces) - 1))
    text, spans = draw(st.sampled_from(["", " ", "\x1c"])), []
    for piece, gap in zip(pieces, [*gaps, ""]):
        spans.append((len(text), len(text) + len(piece)))
        text += piece + gap
    return text, spans


@settings(max_examples=300, deadline=None)
@given(case=_texts_with_spans(), data=st.data())
def test_span_counts_equal_real_counts_wherever_they_answer(
    case: tuple[str, list[tuple[int, int]]], data: st.DataObject
) -> None:
    text, spans = case
    counter = WordPieceCounter()
    table = counter.span_counts(text, spans)
    for first in range(len(spans)):
        for last in range(first, len(spans)):
            start, end = spans[first][0], spans[last][1]
            derived = table.count(start, end)
            gaps = [text[a:b] for (_, a), (b, _) in zip(spans[first:last], spans[first + 1 : last + 1])]
            if all(" " in gap or "\n" in gap or "\u3000" in gap for gap in gaps):
                # Separating whitespace between every two: the sum must be there, and right.
                assert derived == _encoded(text[start:end])
            else:
                assert derived is None or derived == _encoded(text[start:end])
    # Anywhere else it answers None or the truth.
    start = data.draw(st.integers(0, len(text)))
    end = data.draw(st.integers(start, len(text)))
    assert table.count(start, end) in (None, _encoded(text[start:end]))


@settings(max_examples=200, deadline=None)
@given(header=_TEXTS.filter(bool), text=_TEXTS)
def test_a_header_adds_its_own_count(header: str, text: str) -> None:
    # What the chunker relies on to count `header + "\n\n" + text` from the text's count.
    counter = WordPieceCounter()
    assert _encoded(f"{header}\n\n{text}") == _encoded(f"{header}\n\n") + counter.count(text) - counter.base
