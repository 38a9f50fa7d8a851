"""Lexical (BM25) search terms: one tokenizer for stored chunks and queries.

Chunks are stored as postings of their stemmed, stop-word-free terms in
memory-mapped segments that writes add and compaction merges (see
`store/postings.py`), so BM25 is never rebuilt by a reader and IDF is global over
the whole index. Terms come from bm25s's tokenizer with English stop words and
Snowball stemming (what iorag used before it stored BM25).
"""

from __future__ import annotations

import threading
from typing import Protocol, Sequence

from .models import Chunk
from .text import lexical_text

#: Lucene's defaults for BM25.
BM25_K1, BM25_B = 1.2, 0.75


class LexicalSearch(Protocol):
    """What retrieval needs from a lexical engine."""

    def search(self, query: str, k: int) -> list[tuple[int, float]]:
        """(chunk row id, score) of the best `k` matches, best first; no match scores 0."""
        ...


class Terms:
    """Turns text into BM25 terms; thread-safe (the stemmer keeps state between calls)."""

    def __init__(self) -> None:
        import bm25s
        import Stemmer

        self._bm25s = bm25s
        self._stemmer = Stemmer.Stemmer("english")
        self._lock = threading.Lock()

    def of(self, texts: Sequence[str]) -> list[list[str]]:
        """Each text's terms, in order (repeats kept)."""
        ids, vocabulary = self.ids_of(texts)
        return [[vocabulary[i] for i in row] for row in ids]

    def ids_of(self, texts: Sequence[str]) -> tuple[list[list[int]], list[str]]:
        """Each text's terms as indexes into the returned vocabulary (what postings are built from)."""
        if not texts:
            return [], []
        with self._lock:
            tokens = self._bm25s.tokenize(
                list(texts), stopwords="en", stemmer=self._stemmer, show_progress=False, return_ids=True
            )
        vocabulary = [""] * len(tokens.vocab)
        for term, i in tokens.vocab.items():
            vocabulary[i] = term
        return tokens.ids, vocabulary

    def of_chunks(self, chunks: Sequence[Chunk]) -> tuple[list[list[int]], list[str]]:
        """Each chunk's terms over `text.lexical_text` (its header once, then its text), as `ids_of` gives them."""
        return self.ids_of([lexical_text(c.header, c.text) for c in chunks])

    def stem(self, word: str) -> str:
        """One word's term (lowercased, stemmed), stop words included."""
        with self._lock:
            return str(self._stemmer.stemWord(word.lower()))
