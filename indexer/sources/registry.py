"""Which reader reads which file: one entry per suffix, readers imported only when needed.

Each reader module has `read(data, origin)` yielding documents and problems. The
readers of PDF and Office files need the `documents` extra; without it a file of
theirs is a problem naming the extra, and the rest of a scan goes on.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from pathlib import PurePath
from typing import Callable, Iterator

from ..models import Document
from .problems import SourceProblem

#: The extra that holds the PDF and Office libraries.
DOCUMENTS_EXTRA = "documents"


@dataclass(frozen=True)
class Origin:
    """Where the bytes a reader gets came from."""

    #: What documents and problems record as their source (an absolute path, or an upload's name).
    source: str
    #: The id of the document a single-document file becomes.
    doc_id: str
    #: The file's name, for its suffix and the default title.
    name: str

    @property
    def stem(self) -> str:
        return PurePath(self.name).stem


@dataclass(frozen=True)
class _Entry:
    kind: str
    module: str
    function: str = "read"
    #: The optional extra whose packages the module imports, if any.
    extra: str | None = None


_ENTRIES = {
    ".txt": _Entry("text", "text", "read_text"),
    ".md": _Entry("markdown", "text", "read_markdown"),
    ".markdown": _Entry("markdown", "text", "read_markdown"),
    ".html": _Entry("html", "html"),
    ".htm": _Entry("html", "html"),
    ".jsonl": _Entry("jsonl", "jsonl"),
    ".csv": _Entry("csv", "delimited", "read_csv"),
    ".tsv": _Entry("tsv", "delimited", "read_tsv"),
    ".pdf": _Entry("pdf", "pdf", extra=DOCUMENTS_EXTRA),
    ".docx": _Entry("docx", "word", extra=DOCUMENTS_EXTRA),
    ".pptx": _Entry("pptx", "slides", extra=DOCUMENTS_EXTRA),
    ".xlsx": _Entry("xlsx", "spreadsheet", extra=DOCUMENTS_EXTRA),
    ".epub": _Entry("epub", "epub"),
}
SUPPORTED_SUFFIXES = tuple(_ENTRIES)

Reader = Callable[[bytes, Origin], Iterator["Document | SourceProblem"]]


def file_kind(path: PurePath | str) -> str | None:
    """The kind of file ("text", "pdf", ...) its suffix names; None when no reader handles it."""
    entry = _ENTRIES.get(PurePath(path).suffix.lower())
    return entry.kind if entry else None


def read_bytes(data: bytes, origin: Origin) -> Iterator[Document | SourceProblem]:
    """Read one file's bytes with the reader for its suffix.

    Args:
        data: The file's content.
        origin: Its source, document id and name (the suffix picks the reader).

    Yields:
        Documents, and a `SourceProblem` for the file (or a part of it) that could not be read.
    """
    suffix = PurePath(origin.name).suffix.lower()
    entry = _ENTRIES.get(suffix)
    if entry is None:
        yield SourceProblem(origin.source, f"unsupported file type {suffix or '(no extension)'!r} "
                            f"(supported: {' '.join(SUPPORTED_SUFFIXES)})")
        return
    try:
        module = importlib.import_module(f"{__package__}.{entry.module}")
    except ImportError as exc:
        if entry.extra is None:
            raise
        yield SourceProblem(
            origin.source,
            f"reading {suffix} files needs the optional {entry.extra!r} extra "
            f"(pip install 'iorag[{entry.extra}]'; missing: {exc.name})",
        )
        return
    reader: Reader = getattr(module, entry.function)
    yield from reader(data, origin)


def upload_name(name: str) -> str:
    """The last component of an uploaded file's name (either slash), so it cannot name a path."""
    return os.path.basename(name.replace("\\", "/")).strip()


