"""Reading files, directories, globs and JSONL corpora into documents.

Nothing here raises for a bad file: each unreadable source becomes a
`SourceProblem` naming it and saying why, and the rest of the scan goes on.
The caller decides whether problems are fatal.
"""

from __future__ import annotations

import codecs
import glob
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

from .errors import SourceError
from .html_markdown import html_to_markdown
from .models import Document
from .scope import GLOB_MAGIC, SUPPORTED_SUFFIXES, file_kind, in_scope

__all__ = [
    "SUPPORTED_SUFFIXES",
    "ScanResult",
    "SourceProblem",
    "documents_from_records",
    "html_to_markdown",
    "in_scope",
    "iter_documents",
    "iter_files",
    "read_file",
    "scan",
]

#: How much of a file is looked at for NUL bytes to call it binary.
_BINARY_PROBE = 8192
_MARKDOWN_TITLE = re.compile(r"#[ \t]+(.+?)(?:[ \t]+#+)?[ \t]*")


@dataclass(frozen=True)
class SourceProblem:
    """A source that was skipped, and why."""

    source: str
    reason: str

    def __str__(self) -> str:
        return f"{self.source}: {self.reason}"

    def to_error(self) -> SourceError:
        """The same problem as an exception, for callers that treat it as fatal."""
        return SourceError(self.source, self.reason)


@dataclass
class ScanResult:
    """Everything one scan found."""

    documents: list[Document] = field(default_factory=list)
    problems: list[SourceProblem] = field(default_factory=list)
    #: Every file opened, in scan order, whether or not it yielded documents.
    files: list[Path] = field(default_factory=list)


def scan(paths: Sequence[str | Path], *, base: Path | None = None) -> ScanResult:
    """Read every supported file under `paths` into documents.

    Args:
        paths: Files, directories (read recursively, hidden entries skipped) or globs (`**` allowed).
        base: Directory that plain-file document ids are relative to; default the current directory.

    Returns:
        Documents, problems and the files read, in a deterministic order.
    """
    result = ScanResult()
    for item in iter_files(paths):
        if isinstance(item, SourceProblem):
            result.problems.append(item)
            continue
        result.files.append(item)
        for found in read_file(item, base=base):
            if isinstance(found, SourceProblem):
                result.problems.append(found)
            else:
                result.documents.append(found)
    _drop_duplicate_ids(result)
    return result


def iter_documents(
    paths: Sequence[str | Path], *, base: Path | None = None
) -> Iterator[Document | SourceProblem]:
    """Streaming form of `scan`: documents and problems as they are read.

    A document whose id was already yielded by an earlier file becomes a problem.

    Args:
        paths: Files, directories or globs.
        base: Directory that plain-file document ids are relative to.

    Yields:
        A `Document` per document read, a `SourceProblem` per source skipped.
    """
    first_seen: dict[str, str] = {}
    for item in iter_files(paths):
        if isinstance(item, SourceProblem):
            yield item
            continue
        for found in read_file(item, base=base):
            if isinstance(found, Document):
                earlier = first_seen.setdefault(found.id, found.source)
                if earlier != found.source:
                    yield SourceProblem(
                        found.source, f"duplicate document id {found.id!r} (first read from {earlier})"
                    )
                    continue
            yield found


def _drop_duplicate_ids(result: ScanResult) -> None:
    # Same rule as iter_documents: the first file to use an id keeps it.
    first_seen: dict[str, str] = {}
    kept = []
    for doc in result.documents:
        earlier = first_seen.setdefault(doc.id, doc.source)
        if earlier == doc.source:
            kept.append(doc)
        else:
            result.problems.append(
                SourceProblem(doc.source, f"duplicate document id {doc.id!r} (first read from {earlier})")
            )
    result.documents = kept


def iter_files(paths: Sequence[str | Path]) -> Iterator[Path | SourceProblem]:
    """Expand paths into the files to read, each once, in a deterministic order.

    An explicitly named file must have a supported suffix; inside directories
    and glob matches, other files are ignored silently, as are hidden files
    and directories (names starting with "."). Symbolic links to directories
    are not followed.

    Yields:
        Paths to read, and a `SourceProblem` for each path that names nothing readable.
    """
    seen: set[str] = set()

    def fresh(path: Path) -> bool:
        key = os.path.abspath(path)
        if key in seen:
            return False
        seen.add(key)
        return True

    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            for item in _walk(path):
                if isinstance(item, SourceProblem) or fresh(item):
                    yield item
        elif path.exists():
            if not path.is_file():
                yield SourceProblem(str(raw), "not a regular file")
            elif file_kind(path) is None:
                supported = " ".join(SUPPORTED_SUFFIXES)
                yield SourceProblem(
                    str(raw), f"unsupported file type {path.suffix!r} (supported: {supported})"
                )
            elif fresh(path):
                yield path
        elif GLOB_MAGIC.search(str(raw)):
            matches = sorted(glob.glob(str(raw), recursive=True))
            if not matches:
                yield SourceProblem(str(raw), "no files match this pattern")
            for match in map(Path, matches):
                items: Iterable[Path | SourceProblem] = (
                    _walk(match) if match.is_dir() else [match] if match.is_file() and file_kind(match) else []
                )
                for item in items:
                    if isinstance(item, SourceProblem) or fresh(item):
                        yield item
        else:
            yield SourceProblem(str(raw), "no such file or directory")


def _walk(directory: Path) -> Iterator[Path | SourceProblem]:
    errors: list[OSError] = []
    for root, dirs, files in os.walk(directory, onerror=errors.append):
        # Sorted in place so os.walk descends in a stable order.
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if not name.startswith(".") and file_kind(Path(name)) is not None:
                yield Path(root, name)
        while errors:
            error = errors.pop(0)
            yield SourceProblem(str(error.filename or root), error.strerror or str(error))
    for error in errors:
        yield SourceProblem(str(error.filename or directory), error.strerror or str(error))


def read_file(path: Path, *, base: Path | None = None) -> Iterator[Document | SourceProblem]:
    """Read one supported file: one document, or one per line for `.jsonl`.

    Args:
        path: The file.
        base: Directory that the document id is relative to (not used for `.jsonl`,
            whose lines carry their own ids).

    Yields:
        Documents, and a `SourceProblem` for the file or for each bad line.
    """
    source = os.path.abspath(path)
    kind = file_kind(path)
    if kind is None:
        yield SourceProblem(source, f"unsupported file type {path.suffix!r}")
        return
    try:
        data = path.read_bytes()
    except OSError as exc:
        yield SourceProblem(source, exc.strerror or str(exc))
        return
    if b"\x00" in data[:_BINARY_PROBE]:
        yield SourceProblem(source, "binary file")
        return
    if kind == "jsonl":
        yield from _read_jsonl(data, source)
        return
    try:
        text = _decode(data)
    except UnicodeDecodeError as exc:
        yield SourceProblem(source, _utf8_reason(exc, data))
        return
    if kind == "html":
        title, text = html_to_markdown(text)
    else:
        title = _markdown_title(text) if kind == "markdown" else ""
    if not text.strip():
        yield SourceProblem(source, "empty document")
        return
    yield Document(id=_document_id(source, base), text=text, title=title or path.stem, source=source)


def _decode(data: bytes) -> str:
    """UTF-8 without a BOM, newlines as \\n."""
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8) :]
    return _normalize_newlines(data.decode("utf-8"))


def _utf8_reason(exc: UnicodeDecodeError, data: bytes) -> str:
    # Offsets are reported in the file as it is on disk, BOM included.
    shift = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
    return f"not valid UTF-8 (byte offset {exc.start + shift})"


def _normalize_newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n") if "\r" in text else text


def _document_id(source: str, base: Path | None) -> str:
    """The path relative to `base` in posix form when inside it, else the absolute path."""
    root = os.path.abspath(base if base is not None else os.curdir)
    absolute = Path(source)
    try:
        return absolute.relative_to(root).as_posix()
    except ValueError:
        return absolute.as_posix()


def _markdown_title(text: str) -> str:
    """The text of a `# ` heading on the first non-blank line, if there is one."""
    for line in text.split("\n", 20):
        if line.strip():
            match = _MARKDOWN_TITLE.fullmatch(line.strip())
            return match.group(1).strip() if match else ""
    return ""


# -- JSONL --------------------------------------------------------------------


def _read_jsonl(data: bytes, source: str) -> Iterator[Document | SourceProblem]:
    """One document per line of a BEIR-style corpus; a bad line is a problem, not the file."""
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
            doc = _document_from_record(record, where=where, source=source, extra={"line": number})
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


def documents_from_records(records: Iterable[Mapping[str, Any]], *, source: str = "api") -> list[Document]:
    """Validate `{"id", "text", "title"?, "metadata"?}` records (or `_id`) into documents.

    Args:
        records: Parsed JSON objects, e.g. the body of `POST /v1/documents`.
        source: What to record as each document's source.

    Returns:
        One document per record, in order.

    Raises:
        SourceError: A record is malformed or repeats an earlier id; the message names it.
    """
    documents: list[Document] = []
    first_index: dict[str, int] = {}
    for index, record in enumerate(records):
        doc = _document_from_record(record, where=f"record {index}", source=source, extra={})
        if doc.id in first_index:
            raise SourceError(
                f"record {index}", f"duplicate id {doc.id!r} (first in record {first_index[doc.id]})"
            )
        first_index[doc.id] = index
        documents.append(doc)
    return documents


def _document_from_record(record: Any, *, where: str, source: str, extra: Mapping[str, Any]) -> Document:
    if not isinstance(record, Mapping):
        raise SourceError(where, f"expected a JSON object, got {type(record).__name__}")
    raw_id = record.get("_id", record.get("id"))
    if raw_id is None:
        raise SourceError(where, 'missing id ("_id" or "id")')
    # bool is an int in Python, but `true` is not an id anyone meant.
    if isinstance(raw_id, bool) or not isinstance(raw_id, (str, int)):
        raise SourceError(where, f"id must be a string or an integer, got {type(raw_id).__name__}")
    doc_id = str(raw_id)
    if not doc_id.strip():
        raise SourceError(where, "empty id")
    where = f"{where} (id {doc_id!r})"
    text = record.get("text")
    if text is None:
        raise SourceError(where, "missing text")
    if not isinstance(text, str):
        raise SourceError(where, f"text must be a string, got {type(text).__name__}")
    if not text.strip():
        raise SourceError(where, "empty document")
    title = record.get("title")
    if title is None:
        title = ""
    if not isinstance(title, str):
        raise SourceError(where, f"title must be a string, got {type(title).__name__}")
    metadata = record.get("metadata")
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, Mapping):
        raise SourceError(where, f"metadata must be an object, got {type(metadata).__name__}")
    for name, value in (("id", doc_id), ("title", title), ("text", text)):
        if not _encodable(value):
            # JSON can carry "\ud800"; no tokenizer or file format downstream can.
            raise SourceError(where, f"{name} contains an unpaired surrogate")
    return Document(
        id=doc_id,
        text=_normalize_newlines(text),
        title=_normalize_newlines(title).strip(),
        metadata={**metadata, **extra},
        source=source,
    )


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
