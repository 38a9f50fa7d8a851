"""`.jsonl` corpora (BEIR format): one document per line; a bad line is a problem, not the file."""

from __future__ import annotations

import codecs
import json
from typing import Iterator

from ..errors import SourceError
from ..models import Document
from .problems import SourceProblem
from .records import document_from_record
from .registry import Origin


def read(data: bytes, origin: Origin) -> Iterator[Document | SourceProblem]:
    source = origin.source
    first_line: dict[str, int] = {}
    offset = 0
    any_content = False
    for number, raw in enumerate(data.split(b"\n"), start=1):
        line_offset, offset = offset, offset + len(raw) + 1
        if number == 1 and raw.startswith(codecs.BOM_UTF8):
            raw, line_offset = raw[len(codecs.BOM_UTF8) :], line_offset + len(codecs.BOM_UTF8)
        where = f"{source}:{number}"
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            yield SourceProblem(where, f"not valid UTF-8 (byte offset {line_offset + exc.start})")
            any_content = True
            continue
        if not line.strip():
            continue
        any_content = True
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            yield SourceProblem(where, f"invalid JSON: {exc.msg} (column {exc.colno})")
            continue
        try:
            doc = document_from_record(record, where=where, source=source, extra={"line": number})
        except SourceError as exc:
            yield SourceProblem(where, exc.reason)
            continue
        if doc.id in first_line:
            yield SourceProblem(where, f"duplicate id {doc.id!r} (first on line {first_line[doc.id]})")
            continue
        first_line[doc.id] = number
        yield doc
    if not any_content:
        yield SourceProblem(source, "empty document")
