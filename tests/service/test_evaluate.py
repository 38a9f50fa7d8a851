"""Answer scoring as SQuAD's scorer normalises text."""

from __future__ import annotations

from service.evaluate import contains_answer, first_sentence, normalize_answer


def test_normalisation_drops_case_punctuation_articles_and_spacing() -> None:
    assert normalize_answer("The  Denver Broncos!") == "denver broncos"
    assert normalize_answer("an 'A' grade") == "grade"


def test_contains_needs_whole_words() -> None:
    assert contains_answer("They beat the Denver Broncos, 24-10. [1]", ["Denver Broncos"])
    assert not contains_answer("In 1,500 years", ["500"])
    assert contains_answer("In 1500 years", ["1500"])
    assert not contains_answer("anything", ["", "  "])


def test_first_sentence_drops_citations() -> None:
    assert first_sentence("Dr. Who came in 1963. [1] He left. [2]") == "Dr. Who came in 1963."
    assert first_sentence("") == ""
