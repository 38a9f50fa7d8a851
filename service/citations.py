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


#: The start of a bracket that may still become a citation when more text arrives.
_OPEN_CITATION = re.compile(r"\[[\d\s,;\-\u2013\u2014]*\Z")
#: Longest unfinished bracket held back while streaming; longer ones are not citations.
_MAX_HELD = 120


class CitationRenumberer:
    """Renumbers the citations in an answer, also as it streams, so the sources read 1..n.

    The first source cited becomes [1], the next new one [2], and so on; numbers
    that name the same chunk share one number, numbers outside 1..len(keys) are
    dropped from their bracket, and a bracket that names no source at all (think
    `[2019]`) is left as written. `feed` holds back an unfinished `[3` until its
    bracket closes, so the streamed pieces join up to exactly `renumber_citations`.

    Args:
        keys: one key per source as numbered in the prompt (`keys[0]` is [1]), e.g. chunk ids.
    """

    def __init__(self, keys: Sequence[str]) -> None:
        self._keys = list(keys)
        self._numbers: dict[str, int] = {}
        #: 0-based prompt positions of the cited sources, in their new order.
        self.cited: list[int] = []
        self._held = ""

    def feed(self, text: str) -> str:
        """The renumbered text that can be released now (maybe less than was fed)."""
        text = self._held + text
        self._held = ""
        start = text.rfind("[")
        if start != -1 and len(text) - start <= _MAX_HELD and _OPEN_CITATION.match(text, start):
            text, self._held = text[:start], text[start:]
        return _CITATION.sub(self._rewrite, text)

    def flush(self) -> str:
        """The rest, at the end of the answer."""
        text, self._held = self._held, ""
        return _CITATION.sub(self._rewrite, text)

    def _rewrite(self, bracket: re.Match[str]) -> str:
        new: list[int] = []
        for number in cited_numbers(bracket.group(0)):
            if number > len(self._keys):
                continue
            key = self._keys[number - 1]
            if key not in self._numbers:
                self._numbers[key] = len(self._numbers) + 1
                self.cited.append(number - 1)
            if self._numbers[key] not in new:
                new.append(self._numbers[key])
        if not new:
            return bracket.group(0)
        return "[" + ", ".join(map(str, new)) + "]"


def renumber_citations(answer: str, keys: Sequence[str]) -> tuple[str, list[int]]:
    """The answer with its citations renumbered 1..n in order of first citation.

    Args:
        answer: the answer text, citing `[k]` for the source with key `keys[k-1]`.
        keys: one key per source (chunk ids): numbers naming the same key get one number.

    Returns:
        The rewritten text, and the 0-based indices into `keys` of the cited sources:
        `[1]` in the new text is `keys[cited[0]]`, and so on.
    """
    renumberer = CitationRenumberer(keys)
    text = renumberer.feed(answer) + renumberer.flush()
    return text, renumberer.cited
