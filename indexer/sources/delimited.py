"""`.csv` and `.tsv` files (any encoding `decoding` can tell): rows located by their record number."""

from __future__ import annotations

import csv
import io
from typing import Iterator

from ..models import Document
from .builder import TextBuilder, plain
from .problems import SourceProblem
from .registry import Origin
from .tables import RowFormatter, cell_text
from .text import decoded

_SNIFF_BYTES = 64 * 1024


def read_csv(data: bytes, origin: Origin) -> Iterator[Document | SourceProblem]:
    yield from _read(data, origin, None)


def read_tsv(data: bytes, origin: Origin) -> Iterator[Document | SourceProblem]:
    yield from _read(data, origin, "\t")


def _read(data: bytes, origin: Origin, delimiter: str | None) -> Iterator[Document | SourceProblem]:
    result = decoded(data, origin)
    if isinstance(result, SourceProblem):
        yield result
        return
    text, metadata = result
    if delimiter is None:
        try:
            delimiter = csv.Sniffer().sniff(text[:_SNIFF_BYTES], delimiters=",;\t|").delimiter
        except csv.Error:
            delimiter = ","  # one column, or too irregular to tell: the standard comma
    builder = TextBuilder()
    rows = RowFormatter()
    try:
        for number, record in enumerate(csv.reader(io.StringIO(text), delimiter=delimiter), start=1):
            line = rows.line([cell_text(cell) for cell in record])
            if line:
                builder.add(plain(line), {"row": number}, separator="\n")
    except csv.Error as exc:
        yield SourceProblem(origin.source, f"malformed CSV: {exc}")
        return
    if builder.empty:
        yield SourceProblem(origin.source, "empty document")
        return
    yield builder.document(origin, metadata=metadata)
