"""Assembling a document's text from parts that each come from one place (page, slide, row)."""

from __future__ import annotations

import re
from typing import Any, Mapping

from ..models import Document, Segment
from .registry import Origin

# A line the chunker would read as a heading or a code fence.
_MARKUP_LINE = re.compile(r"^( {0,3})(#|```|~~~)", re.MULTILINE)
# Control characters other than tab and newline, and unpaired surrogates: no tokenizer wants them.
_JUNK = re.compile("[\x00-\x08\x0b-\x1f\x7f\ud800-\udfff]")


def clean(text: str) -> str:
    """Newlines as \\n, control characters dropped, unpaired surrogates replaced."""
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return _JUNK.sub(lambda m: "\ufffd" if m.group() >= "\ud800" else "", text)


def plain(text: str) -> str:
    """Extracted text made safe for the chunker: a line starting with `#` or a fence is not markup."""
    return _MARKUP_LINE.sub(lambda m: m.group(1) + "\\" + m.group(2), clean(text))


class TextBuilder:
    """Joins parts with blank lines (or a newline) and records each located part as a segment."""

    def __init__(self) -> None:
        self._parts: list[str] = []
        self._length = 0
        self._segments: list[Segment] = []

    def heading(self, text: str, level: int = 1) -> None:
        """A markdown heading (it gives the following chunks their heading path)."""
        text = " ".join(text.split())
        if text:
            self.add("#" * level + " " + text.lstrip("#").strip())

    def add(self, text: str, location: Mapping[str, Any] | None = None, *, separator: str = "\n\n") -> None:
        """Append a part; blank parts are skipped. `separator` goes before it unless it is first."""
        text = text.strip()
        if not text:
            return
        if self._parts:
            self._parts.append(separator)
            self._length += len(separator)
        start = self._length
        self._parts.append(text)
        self._length += len(text)
        if location is not None:
            self._segments.append(Segment(start, self._length, dict(location)))

    @property
    def empty(self) -> bool:
        return not self._parts

    def document(self, origin: Origin, *, title: str = "", metadata: Mapping[str, Any] | None = None) -> Document:
        return Document(
            id=origin.doc_id,
            text="".join(self._parts),
            title=" ".join(title.split()) or origin.stem,
            metadata=dict(metadata or {}),
            source=origin.source,
            segments=tuple(self._segments),
        )
