"""Lexical (BM25) search terms: one tokenizer for stored chunks and queries.

Chunks are stored in an SQLite FTS5 table of the snapshot (see `store/snapshot.py`)
as their stemmed, stop-word-free terms; FTS5 keeps the postings and the corpus
statistics as writes add and tombstone rows, so BM25 is never rebuilt by a reader
and IDF is global over the whole index. Terms come from bm25s's tokenizer with
English stop words and Snowball stemming (what iorag used before it stored BM25).
"""

from __future__ import annotations

import threading
from typing import Protocol, Sequence

from .models import Chunk

#: Lucene's defaults for BM25; FTS5's bm25() uses the same k1 and b.
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

    def of(self, texts: Sequence[str]) -> list[str]:
        """Each text's terms, space-separated (what the FTS5 table stores)."""
        if not texts:
            return []
        with self._lock:
            tokens = self._bm25s.tokenize(
                list(texts), stopwords="en", stemmer=self._stemmer, show_progress=False, return_ids=False
            )
        return [" ".join(t) for t in tokens]

    def of_chunks(self, chunks: Sequence[Chunk]) -> list[tuple[str, str]]:
        """(header terms, text terms) per chunk: two FTS5 columns ranked with equal weights, which is
        BM25 over `text.lexical_text` (the header once, then the text)."""
        headers = self.of([c.header for c in chunks])
        bodies = self.of([c.text for c in chunks])
        return list(zip(headers, bodies))

    def stem(self, word: str) -> str:
        """One word's term (lowercased, stemmed), stop words included."""
        with self._lock:
            return str(self._stemmer.stemWord(word.lower()))

    def match(self, query: str) -> str | None:
        """An FTS5 MATCH expression: any of the query's terms; None if it has none."""
        terms = dict.fromkeys(self.of([query])[0].split())
        if not terms:
            return None
        return " OR ".join(f'"{t}"' for t in terms)
