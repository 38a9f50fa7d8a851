"""`.xlsx` workbooks through openpyxl: each sheet under its name as a heading, rows located by sheet and row.

Formulas read as the values Excel last saved. Needs the `documents` extra.
"""

from __future__ import annotations

import io
from typing import Iterator

import openpyxl

from ..models import Document
from .builder import TextBuilder, plain
from .office import damaged, precheck
from .problems import SourceProblem
from .registry import Origin
from .tables import RowFormatter, cell_text


def read(data: bytes, origin: Origin) -> Iterator[Document | SourceProblem]:
    problem = precheck(data, origin, "XLSX")
    if problem:
        yield problem
        return
    builder = TextBuilder()
    sheets: list[str] = []
    try:
        workbook = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
        try:
            for sheet in workbook.worksheets:
                sheets.append(sheet.title)
                rows = RowFormatter()
                heading_done = False
                for number, values in enumerate(sheet.iter_rows(min_row=1, values_only=True), start=1):
                    line = rows.line([cell_text(v) for v in values])
                    if not line:
                        continue
                    if not heading_done:
                        builder.heading(sheet.title, 1)
                        heading_done = True
                    builder.add(plain(line), {"sheet": sheet.title, "row": number}, separator="\n")
            title = workbook.properties.title or ""
        finally:
            workbook.close()
    except Exception as exc:  # openpyxl raises KeyError, ValueError, InvalidFileException... on damaged parts
        yield damaged(origin, "XLSX", exc)
        return
    if builder.empty:
        yield SourceProblem(origin.source, "empty document")
        return
    yield builder.document(origin, title=title, metadata={"sheets": sheets})
