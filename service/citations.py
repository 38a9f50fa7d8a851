"""Reading the numbered citations ([1], [2, 3], [4-6]) out of a model's answer."""

from __future__ import annotations

import re
from typing import Sequence

from indexer.models import ScoredChunk

#: One bracket of citations: numbers and ranges separated by commas or semicolons.
#: Dashes cover ASCII hyphen, en dash and em dash, which models use interchangeably.
_CITATION = re.compile(
    r"\[\s*(\d+(?:\s*[-\u2013\u2014]\s*\d+)?(?:\s*[,;]\s*\d+(?:\s*[-\u2013\u2014]\s*\d+)?)*)\s*\]"
)
_ITEM = re.compile(r"(\d+)(?:\s*[-\u2013\u2014]\s*(\d+))?")

#: A range wider than this is not a citation (think `[2019-2024]`); it is skipped.
MAX_RANGE = 50


def cited_numbers(answer: str) -> list[int]:
    """The source numbers an answer cites, in order of first appearance, each once.

    Understands `[1]`, `[1][2]`, `[1, 3]`, `[1; 3]` and ranges such as `[2-4]`.
    Zero and ranges wider than `MAX_RANGE` numbers are ignored.

    Args:
        answer: the model's text.

    Returns:
        1-based source numbers, unique, in the order they first appear.
    """
    seen: dict[int, None] = {}
    for bracket in _CITATION.finditer(answer):
        for item in _ITEM.finditer(bracket.group(1)):
            first = int(item.group(1))
            last = int(item.group(2)) if item.group(2) else first
            low, high = min(first, last), max(first, last)
            if high - low >= MAX_RANGE:
                continue
            # A reversed range ([4-2]) is read as written: 4, 3, 2.
            step = 1 if first <= last else -1
            for number in range(first, last + step, step):
                if number > 0:
                    seen.setdefault(number, None)
    return list(seen)


def map_citations(answer: str, sources: Sequence[ScoredChunk]) -> list[int]:
    """The 0-based indices into `sources` that an answer cites.

    Args:
        answer: the model's text.
        sources: the sources as numbered in the prompt ([1] is `sources[0]`).

    Returns:
        Indices in order of first citation; numbers outside 1..len(sources) are dropped.
    """
    return [number - 1 for number in cited_numbers(answer) if number <= len(sources)]
