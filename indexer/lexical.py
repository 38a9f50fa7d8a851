"""The lexical (BM25) index over chunk texts, built in memory from a snapshot's chunks.

Rebuilt on load rather than stored: bm25s indexes tens of thousands of chunks
in about a second, and deriving it from the same snapshot as the dense index
keeps the two consistent by construction.
"""

from __future__ import annotations

import math
import threading
from typing import Sequence

import numpy as np

from .models import Chunk, ScoredChunk
from .text import lexical_text


class LexicalIndex:
    """BM25 (Lucene variant) with English stop words and Snowball stemming."""

    def __init__(self, chunks: Sequence[Chunk]) -> None:
        import bm25s
        import Stemmer

        self._bm25s = bm25s
        self._stemmer = Stemmer.Stemmer("english")
        # The stemmer keeps state between calls: one caller at a time.
        self._lock = threading.Lock()
        self.chunks = list(chunks)
        self._retriever = bm25s.BM25()
        if self.chunks:
            tokens = bm25s.tokenize(
                [lexical_text(c.header, c.text) for c in self.chunks],
                stopwords="en",
                stemmer=self._stemmer,
                show_progress=False,
            )
            self._retriever.index(tokens, show_progress=False)

    def __len__(self) -> int:
        return len(self.chunks)

    def rarity(self, word: str) -> float:
        """How rare `word` is among the chunks: BM25's idf of its stem, log(1 + (N - df + 0.5) / (df + 0.5)).

        0.0 for a word no chunk holds (it cannot help a search here).
        """
        if not self.chunks:
            return 0.0
        with self._lock:
            stem = self._stemmer.stemWord(word.lower())
        column = self._retriever.vocab_dict.get(stem)
        if column is None or not stem:
            return 0.0
        indptr = self._retriever.scores["indptr"]
        df = int(indptr[column + 1] - indptr[column])
        if df == 0:
            return 0.0
        n = len(self.chunks)
        return math.log(1.0 + (n - df + 0.5) / (df + 0.5))

    def search(self, query: str, k: int) -> list[ScoredChunk]:
        """Chunks that share terms with `query`, best first; chunks scoring 0 are left out."""
        if not self.chunks or k < 1:
            return []
        with self._lock:
            terms = self._bm25s.tokenize(
                [query], stopwords="en", stemmer=self._stemmer, show_progress=False, return_ids=False
            )
            if not terms[0]:
                return []
            positions, scores = self._retriever.retrieve(
                terms, k=min(k, len(self.chunks)), show_progress=False, n_threads=1
            )
        hits = []
        for position, score in zip(np.asarray(positions)[0], np.asarray(scores)[0]):
            if score <= 0:
                break
            hits.append(ScoredChunk(self.chunks[int(position)], float(score)))
        return hits
