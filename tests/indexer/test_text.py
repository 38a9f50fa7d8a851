"""The shared text helpers: one sentence splitter, query normalisation, BM25 input."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from indexer.text import lexical_text, normalize_query, sentence_spans


def test_spans_inside_a_range_are_offsets_into_the_whole_text() -> None:
    text = "Intro. First one here. Dr. Who came, e.g. later. Last one! Outro."
    start, end = text.index("First"), text.index(" Outro")
    assert [text[a:b] for a, b in sentence_spans(text, start, end)] == [
        "First one here.",
        "Dr. Who came, e.g. later.",
        "Last one!",
    ]


def test_soft_wrapped_lines_stay_one_sentence_but_blocks_split() -> None:
    text = "A sentence wrapped\nover two lines.\n- an item\n- another item\n\nNext paragraph"
    assert [text[a:b] for a, b in sentence_spans(text)] == [
        "A sentence wrapped\nover two lines.",
        "- an item",
        "- another item",
        "Next paragraph",
    ]
    # The chunker cuts at every line break: rows and log lines are units there.
    assert [text[a:b] for a, b in sentence_spans(text, every_line=True)][:2] == ["A sentence wrapped", "over two lines."]


@given(st.text(max_size=200), st.data())
def test_spans_cover_every_non_space_character_of_the_range(text: str, data: st.DataObject) -> None:
    start = data.draw(st.integers(0, len(text)))
    end = data.draw(st.integers(start, len(text)))
    spans = sentence_spans(text, start, end)
    covered = "".join(text[a:b] for a, b in spans)
    assert "".join(text[start:end].split()) == "".join(covered.split())
    assert all(start <= a < b <= end for a, b in spans)
    assert all(b1 <= a2 for (_, b1), (a2, _) in zip(spans, spans[1:]))


def test_queries_are_folded_and_squashed() -> None:
    assert normalize_query("  ｉｏｒａｇ\tquota\n\nrefresh ") == "iorag quota refresh"
    assert normalize_query("ﬁle") == "file"
    assert normalize_query(" \n ") == ""


def test_bm25_sees_the_header_then_the_text() -> None:
    assert lexical_text("Limits > Quotas", "Pools refresh.") == "Limits > Quotas\nPools refresh."
    assert lexical_text("", "Just text.") == "Just text."
