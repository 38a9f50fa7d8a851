"""`.docx` files through python-docx: headings as markdown headings, lists, tables as rows, in body order.

Word documents have no fixed pages (pagination happens when they are shown), so
their chunks carry no location. Needs the `documents` extra.
"""

from __future__ import annotations

import io
import re
from typing import Any, Iterator

import docx
from docx.table import Table
from docx.text.paragraph import Paragraph

from ..models import Document
from .builder import TextBuilder, plain
from .office import damaged, precheck
from .problems import SourceProblem
from .registry import Origin
from .tables import RowFormatter

_HEADING_STYLE = re.compile(r"heading\s*([1-9])", re.IGNORECASE)


def read(data: bytes, origin: Origin) -> Iterator[Document | SourceProblem]:
    problem = precheck(data, origin, "DOCX")
    if problem:
        yield problem
        return
    builder = TextBuilder()
    try:
        document = docx.Document(io.BytesIO(data))
        in_list = False
        for block in document.iter_inner_content():
            if isinstance(block, Paragraph):
                in_list = _paragraph(builder, block, in_list)
            elif isinstance(block, Table):
                _table(builder, block)
                in_list = False
        title = document.core_properties.title or ""
    except Exception as exc:  # python-docx raises KeyError, ValueError, lxml errors... on damaged parts
        yield damaged(origin, "DOCX", exc)
        return
    if builder.empty:
        yield SourceProblem(origin.source, "empty document")
        return
    yield builder.document(origin, title=title)


def _paragraph(builder: TextBuilder, paragraph: Paragraph, in_list: bool) -> bool:
    """Add one paragraph; returns whether it was a list item (items of one list share a block)."""
    text = paragraph.text
    if not text.strip():
        return in_list
    style = (paragraph.style.name if paragraph.style is not None else "") or ""
    heading = _HEADING_STYLE.fullmatch(style)
    if style == "Title":
        builder.heading(text, 1)
    elif heading:
        builder.heading(text, int(heading.group(1)))
    elif "List" in style:
        builder.add("- " + plain(text), separator="\n" if in_list else "\n\n")
        return True
    else:
        builder.add(plain(text))
    return False


def _table(builder: TextBuilder, table: Table) -> None:
    rows = RowFormatter()
    lines: list[str] = []
    for row in table.rows:
        cells: list[str] = []
        previous: Any = None
        for cell in row.cells:
            # A merged cell is returned once per grid column it spans: say it once.
            if cell._tc is not previous:
                cells.append(" ".join(cell.text.split()))
            previous = cell._tc
        line = rows.line(cells)
        if line:
            lines.append(plain(line))
    builder.add("\n".join(lines))
