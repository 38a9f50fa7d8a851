"""`.pptx` files through python-pptx: each slide's title, text, tables and notes, located by slide.

Needs the `documents` extra.
"""

from __future__ import annotations

import io
from typing import Any, Iterator

from pptx import Presentation
from pptx.enum.shapes import MSO_SHAPE_TYPE

from ..models import Document
from .builder import TextBuilder, plain
from .office import damaged, precheck
from .problems import SourceProblem
from .registry import Origin
from .tables import RowFormatter, cell_text


def read(data: bytes, origin: Origin) -> Iterator[Document | SourceProblem]:
    problem = precheck(data, origin, "PPTX")
    if problem:
        yield problem
        return
    builder = TextBuilder()
    try:
        presentation = Presentation(io.BytesIO(data))
        slides = 0
        first_title = ""
        for number, slide in enumerate(presentation.slides, start=1):
            slides = number
            title_shape = slide.shapes.title
            title = " ".join(title_shape.text_frame.text.split()) if title_shape is not None else ""
            first_title = first_title or title
            parts = [f"# {title or f'Slide {number}'}"]
            for shape in slide.shapes:
                if title_shape is not None and shape.shape_id == title_shape.shape_id:
                    continue
                parts.extend(_shape_texts(shape))
            if slide.has_notes_slide and slide.notes_slide.notes_text_frame is not None:
                notes = slide.notes_slide.notes_text_frame.text
                if notes.strip():
                    parts.append("Notes: " + plain(notes))
            if len(parts) > 1 or title:
                builder.add("\n\n".join(p for p in parts if p.strip()), {"slide": number})
        title = presentation.core_properties.title or first_title
    except Exception as exc:  # python-pptx raises KeyError, ValueError, lxml errors... on damaged parts
        yield damaged(origin, "PPTX", exc)
        return
    if builder.empty:
        yield SourceProblem(origin.source, "empty document")
        return
    yield builder.document(origin, title=title, metadata={"slides": slides})


def _shape_texts(shape: Any) -> list[str]:
    """Texts of one shape in reading order; groups are opened."""
    if shape.shape_type == MSO_SHAPE_TYPE.GROUP:
        return [text for inner in shape.shapes for text in _shape_texts(inner)]
    if getattr(shape, "has_table", False) and shape.has_table:
        rows = RowFormatter()
        lines = [rows.line([cell_text(cell.text) for cell in row.cells]) for row in shape.table.rows]
        return ["\n".join(plain(line) for line in lines if line)]
    if getattr(shape, "has_text_frame", False) and shape.has_text_frame and shape.text_frame.text.strip():
        return [plain(shape.text_frame.text)]
    return []
