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
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

from .errors import SourceError
from .models import Document

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

#: File kinds by suffix (compared lower-cased).
_KINDS = {
    ".txt": "text",
    ".md": "markdown",
    ".markdown": "markdown",
    ".html": "html",
    ".htm": "html",
    ".jsonl": "jsonl",
}
SUPPORTED_SUFFIXES = tuple(_KINDS)

#: How much of a file is looked at for NUL bytes to call it binary.
_BINARY_PROBE = 8192
_GLOB_MAGIC = re.compile(r"[*?[]")
_MARKDOWN_TITLE = re.compile(r"#[ \t]+(.+?)(?:[ \t]+#+)?[ \t]*")
_WHITESPACE = re.compile(r"\s+")


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
            elif _kind(path) is None:
                supported = " ".join(SUPPORTED_SUFFIXES)
                yield SourceProblem(
                    str(raw), f"unsupported file type {path.suffix!r} (supported: {supported})"
                )
            elif fresh(path):
                yield path
        elif _GLOB_MAGIC.search(str(raw)):
            matches = sorted(glob.glob(str(raw), recursive=True))
            if not matches:
                yield SourceProblem(str(raw), "no files match this pattern")
            for match in map(Path, matches):
                items: Iterable[Path | SourceProblem] = (
                    _walk(match) if match.is_dir() else [match] if match.is_file() and _kind(match) else []
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
            if not name.startswith(".") and _kind(Path(name)) is not None:
                yield Path(root, name)
        while errors:
            error = errors.pop(0)
            yield SourceProblem(str(error.filename or root), error.strerror or str(error))
    for error in errors:
        yield SourceProblem(str(error.filename or directory), error.strerror or str(error))


def _kind(path: Path) -> str | None:
    return _KINDS.get(path.suffix.lower())


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
    kind = _kind(path)
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


# -- HTML ---------------------------------------------------------------------

_DROPPED_TAGS = frozenset(
    {"script", "style", "nav", "noscript", "template", "head", "title", "svg", "iframe", "object"}
)
_BLOCK_TAGS = frozenset(
    {
        "address", "article", "aside", "blockquote", "body", "caption", "dd", "details", "dialog",
        "div", "dl", "dt", "fieldset", "figcaption", "figure", "footer", "form", "header", "hr",
        "html", "li", "main", "ol", "p", "section", "summary", "table", "tbody", "td", "tfoot",
        "th", "thead", "tr", "ul",
    }
)  # fmt: skip
_HEADING_TAGS = {f"h{level}": level for level in range(1, 7)}


def html_to_markdown(html: str) -> tuple[str, str]:
    """Turn HTML into markdown-ish text the chunker understands.

    Headings become `#` headings, block elements (p, li, td, ...) become
    paragraphs separated by blank lines, `pre` becomes a fenced block, and
    script, style and nav are dropped.

    Args:
        html: The page.

    Returns:
        (title, text): the `<title>` or else the first `<h1>` (may be empty), and the text.
    """
    from bs4 import BeautifulSoup, MarkupResemblesLocatorWarning, XMLParsedAsHTMLWarning
    from bs4.element import CData, NavigableString

    with warnings.catch_warnings():
        # A page whose whole text looks like a file name or XML is still a page.
        warnings.simplefilter("ignore", MarkupResemblesLocatorWarning)
        warnings.simplefilter("ignore", XMLParsedAsHTMLWarning)
        soup = BeautifulSoup(html, "html.parser")

    blocks: list[str] = []
    inline: list[str] = []
    # "- " waiting for the first text of a list item, which may sit in a nested block.
    bullet = [""]

    def flush() -> None:
        lines = (" ".join(part.split()) for part in "".join(inline).split("\n"))
        # A paragraph starting with "#" must not read as a heading.
        text = "\n".join("\\" + line if line.startswith("#") else line for line in lines if line)
        if text:
            blocks.append(bullet[0] + text)
            bullet[0] = ""
        inline.clear()

    def walk(node: Any) -> None:
        for child in node.children:
            if type(child) is NavigableString or isinstance(child, CData):
                inline.append(_WHITESPACE.sub(" ", str(child)))
            elif isinstance(child, NavigableString) or child.name in _DROPPED_TAGS:
                continue  # comments, doctypes, processing instructions; dropped elements
            elif child.name in _HEADING_TAGS:
                flush()
                heading = " ".join(child.get_text(" ").split())
                if heading:
                    blocks.append("#" * _HEADING_TAGS[child.name] + " " + heading)
            elif child.name == "pre":
                flush()
                code = child.get_text().strip("\n")
                if code.strip():
                    # A fence longer than any backtick run inside keeps the block closed.
                    longest = max((len(run) for run in re.findall(r"`+", code)), default=0)
                    fence = "`" * max(3, longest + 1)
                    blocks.append(f"{fence}\n{code}\n{fence}")
            elif child.name == "br":
                inline.append("\n")
            elif child.name in _BLOCK_TAGS:
                flush()
                if child.name == "li":
                    bullet[0] = "- "
                walk(child)
                flush()
                bullet[0] = ""
            else:
                walk(child)

    walk(soup)
    flush()
    title_tag = soup.find("title")
    title = " ".join(title_tag.get_text(" ").split()) if title_tag else ""
    if not title:
        h1 = soup.find("h1")
        title = " ".join(h1.get_text(" ").split()) if h1 else ""
    return title, "\n\n".join(blocks)


# -- scope --------------------------------------------------------------------


def in_scope(source: str, paths: Sequence[str | Path]) -> bool:
    """Whether a scan of `paths` would have read the file `source` if it still existed.

    True when `source` is one of the paths, lies under one of them (a
    directory, with no hidden component and a supported suffix), or matches
    a glob by the same rules the scan uses. Used to retire documents whose
    file is gone without touching documents from elsewhere.

    Args:
        source: A document's source: the absolute path of its file.
        paths: The paths of the scan.

    Returns:
        True when the scan covered that file.
    """
    target = os.path.abspath(source)
    for raw in paths:
        path = os.path.abspath(raw)
        if target == path:
            return True
        if _walk_covers(path, target):
            return True
        if _GLOB_MAGIC.search(str(raw)) and not os.path.exists(raw):
            pattern = _glob_regex(path)
            # A glob match that is a directory is walked, so any ancestor may be the match.
            candidate = target
            while True:
                if pattern.fullmatch(candidate) and (
                    candidate == target and _kind(Path(target)) is not None or _walk_covers(candidate, target)
                ):
                    return True
                parent = os.path.dirname(candidate)
                if parent == candidate:
                    break
                candidate = parent
    return False


def _walk_covers(directory: str, target: str) -> bool:
    """Whether walking `directory` reads `target` (below it, nothing hidden, supported suffix)."""
    prefix = directory.rstrip(os.sep) + os.sep
    if not target.startswith(prefix):
        return False
    parts = target[len(prefix) :].split(os.sep)
    return not any(part.startswith(".") for part in parts) and _kind(Path(target)) is not None


def _glob_regex(pattern: str) -> re.Pattern[str]:
    """A regex for what `glob.glob(pattern, recursive=True)` matches (hidden names only when spelled out)."""
    segments = pattern.split(os.sep)
    out = []
    for index, segment in enumerate(segments):
        last = index == len(segments) - 1
        if segment == "**":
            # Any number of non-hidden directories; as the last segment, at least one entry.
            out.append(r"[^/.][^/]*(?:/[^/.][^/]*)*" if last else r"(?:[^/.][^/]*/)*")
            continue
        out.append(_segment_regex(segment) + ("" if last else "/"))
    return re.compile("".join(out), re.DOTALL)


def _segment_regex(segment: str) -> str:
    parts = []
    position = 0
    while position < len(segment):
        char = segment[position]
        if char == "*":
            parts.append("[^/]*")
        elif char == "?":
            parts.append("[^/]")
        elif char == "[" and (close := segment.find("]", position + 2)) != -1:
            body = segment[position + 1 : close]
            negate = body.startswith("!")
            body = body[1:] if negate else body
            parts.append("[" + ("^" if negate else "") + body.replace("\\", "\\\\").replace("^", "\\^") + "]")
            position = close
        else:
            parts.append(re.escape(char))
        position += 1
    regex = "".join(parts)
    # Like glob: a wildcard at the start of a name does not match a leading ".".
    return r"(?!\.)" + regex if segment[:1] in ("*", "?", "[") else regex
