"""Values that travel through the pipeline: documents, chunks, scored chunks."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Mapping

#: A place in a document's original form: `{"page": 7}`, `{"slide": 3}`, `{"sheet": "Q3", "row": 12}`.
Location = Mapping[str, Any]


@dataclass(frozen=True)
class Segment:
    """A span of a document's text that comes from one place (a page, a slide, a row).

    `document.text[start:end]` is that place's text.
    """

    start: int
    end: int
    location: Location


@dataclass(frozen=True)
class Document:
    """One source document, already turned into plain text (markdown kept)."""

    id: str
    text: str
    title: str = ""
    metadata: Mapping[str, Any] = field(default_factory=dict)
    #: Where it came from (a path, `path:line` for jsonl, or `api`).
    source: str = ""
    #: Where each part of the text comes from, in text order, not overlapping; empty for
    #: formats without pages, slides or rows. The chunker never lets a chunk cross two
    #: pages or slides (rows of one sheet may share a chunk).
    segments: tuple[Segment, ...] = ()

    @property
    def content_hash(self) -> str:
        """Hash of everything that changes the chunks: title, text and segments."""
        if not self.segments:
            return sha256_hex(self.title + "\x00" + self.text)
        return sha256_hex(self.title + "\x00" + self.text + "\x00" + segments_json(self.segments))


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
    #: Where the chunk's text is in the original (page, slide, sheet and row); None when unknown.
    location: Mapping[str, Any] | None = field(default=None, compare=False)

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


def segments_json(segments: tuple[Segment, ...]) -> str:
    """Segments as compact JSON (`[[start, end, location], ...]`), as stored and hashed."""
    return json.dumps([[s.start, s.end, dict(s.location)] for s in segments], sort_keys=True, separators=(",", ":"))


def segments_from_json(data: str | None) -> tuple[Segment, ...]:
    """The inverse of `segments_json`; None or empty gives no segments."""
    if not data:
        return ()
    return tuple(Segment(int(a), int(b), dict(loc)) for a, b, loc in json.loads(data))


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def make_chunk_id(doc_id: str, text: str, occurrence: int) -> str:
    """Content-addressed id: the same text in the same document keeps its id.

    `occurrence` tells apart identical passages repeated inside one document.
    """
    return sha256_hex(f"{doc_id}\x00{occurrence}\x00{text}")[:24]
