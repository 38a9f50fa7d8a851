"""`.html` and `.htm` pages: headings, paragraphs and code kept as markdown (see `html_markdown`)."""

from __future__ import annotations

from typing import Iterator

from ..html_markdown import html_to_markdown
from ..models import Document
from .problems import SourceProblem
from .registry import Origin
from .text import decoded


def read(data: bytes, origin: Origin) -> Iterator[Document | SourceProblem]:
    result = decoded(data, origin)
    if isinstance(result, SourceProblem):
        yield result
        return
    page, metadata = result
    title, text = html_to_markdown(page)
    if not text.strip():
        yield SourceProblem(origin.source, "empty document")
        return
    yield Document(id=origin.doc_id, text=text, title=title or origin.stem, metadata=metadata, source=origin.source)
