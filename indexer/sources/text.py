"""`.txt` and `.md` files, in any encoding `decoding` can tell (noted in the metadata when not UTF-8)."""

from __future__ import annotations

import re
from typing import Any, Iterator

from ..models import Document
from .decoding import NotText, decode_text
from .problems import SourceProblem
from .registry import Origin

_MARKDOWN_TITLE = re.compile(r"#[ \t]+(.+?)(?:[ \t]+#+)?[ \t]*")


def read_text(data: bytes, origin: Origin) -> Iterator[Document | SourceProblem]:
    yield from _read(data, origin, markdown=False)


def read_markdown(data: bytes, origin: Origin) -> Iterator[Document | SourceProblem]:
    yield from _read(data, origin, markdown=True)


def decoded(data: bytes, origin: Origin) -> tuple[str, dict[str, Any]] | SourceProblem:
    """The text, and `{"encoding": ...}` metadata when it was not UTF-8; or the problem."""
    try:
        text, encoding = decode_text(data)
    except NotText as exc:
        return SourceProblem(origin.source, str(exc))
    return text, ({} if encoding in ("utf-8", "utf-8-sig", "ascii") else {"encoding": encoding})


def _read(data: bytes, origin: Origin, *, markdown: bool) -> Iterator[Document | SourceProblem]:
    result = decoded(data, origin)
    if isinstance(result, SourceProblem):
        yield result
        return
    text, metadata = result
    if not text.strip():
        yield SourceProblem(origin.source, "empty document")
        return
    title = markdown_title(text) if markdown else ""
    yield Document(id=origin.doc_id, text=text, title=title or origin.stem, metadata=metadata, source=origin.source)


def markdown_title(text: str) -> str:
    """The text of a `# ` heading on the first non-blank line, if there is one."""
    for line in text.split("\n", 20):
        if line.strip():
            match = _MARKDOWN_TITLE.fullmatch(line.strip())
            return match.group(1).strip() if match else ""
    return ""
