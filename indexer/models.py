"""Values that travel through the pipeline: documents, chunks, scored chunks."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Mapping


@dataclass(frozen=True)
class Document:
    """One source document, already turned into plain text (markdown kept)."""

    id: str
    text: str
    title: str = ""
    metadata: Mapping[str, Any] = field(default_factory=dict)
    #: Where it came from (a path, `path:line` for jsonl, or `api`).
    source: str = ""

    @property
    def content_hash(self) -> str:
        """Hash of everything that changes the chunks: title and text."""
        return sha256_hex(self.title + "\x00" + self.text)


@dataclass(frozen=True)
class Chunk:
    """A piece of a document that fits the embedding model's token limit.

    `start`/`end` are character offsets of `text` in the document's text, so
    `document.text[start:end] == text`.
    """

    chunk_id: str
    doc_id: str
    ordinal: int
    text: str
    start: int
    end: int
    #: Tokens of `embedding_text` under the embedding model's counter.
    tokens: int
    title: str = ""
    headings: tuple[str, ...] = ()

    @property
    def header(self) -> str:
        """Title and heading path, sent with the text so a chunk keeps its context."""
        parts: list[str] = []
        for part in (self.title, *self.headings):
            # A document's title is often its first heading too: say it once.
            if part and (not parts or part != parts[-1]):
                parts.append(part)
        return " > ".join(parts)

    @property
    def embedding_text(self) -> str:
        """What is sent to the embedding model for this chunk."""
        return embedding_text(self.header, self.text)


@dataclass(frozen=True)
class ScoredChunk:
    """A chunk with the score a search gave it (higher is better)."""

    chunk: Chunk
    score: float


def embedding_text(header: str, text: str) -> str:
    """Join a chunk's header and text the one way the chunker budgets for."""
    return f"{header}\n\n{text}" if header else text


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def make_chunk_id(doc_id: str, text: str, occurrence: int) -> str:
    """Content-addressed id: the same text in the same document keeps its id.

    `occurrence` tells apart identical passages repeated inside one document.
    """
    return sha256_hex(f"{doc_id}\x00{occurrence}\x00{text}")[:24]
