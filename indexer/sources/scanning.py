"""Walking files, directories and globs, and reading each file with the reader for its suffix.

Nothing here raises for a bad file: each unreadable source becomes a
`SourceProblem` naming it and saying why, files no reader handles are counted
by suffix, and the rest of the scan goes on. The caller decides whether
problems are fatal.
"""

from __future__ import annotations

import glob
import os
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

from ..models import Document
from .problems import ScanResult, SourceProblem, UnsupportedFile
from .registry import SUPPORTED_SUFFIXES, Origin, file_kind, read_bytes, upload_name
from .scope import GLOB_MAGIC


def scan(
    paths: Sequence[str | Path], *, base: Path | None = None, on_file: Callable[[Path], None] | None = None
) -> ScanResult:
    """Read every supported file under `paths` into documents.

    Args:
        paths: Files, directories (read recursively, hidden entries skipped) or globs (`**` allowed).
        base: Directory that plain-file document ids are relative to; default the current directory.
        on_file: called after each file is read (for progress).

    Returns:
        Documents, problems, the files read and the unsupported files met, in a deterministic order.
    """
    result = ScanResult()
    for item in iter_files(paths):
        if isinstance(item, SourceProblem):
            result.problems.append(item)
        elif isinstance(item, UnsupportedFile):
            result.unsupported[item.kind] = result.unsupported.get(item.kind, 0) + 1
        else:
            result.files.append(item)
            for found in read_file(item, base=base):
                if isinstance(found, SourceProblem):
                    result.problems.append(found)
                else:
                    result.documents.append(found)
            if on_file is not None:
                on_file(item)
    _drop_duplicate_ids(result)
    return result


def iter_documents(
    paths: Sequence[str | Path], *, base: Path | None = None
) -> Iterator[Document | SourceProblem | UnsupportedFile]:
    """Streaming form of `scan`: documents, problems and unsupported files as they are met.

    A document whose id was already yielded by an earlier file becomes a problem.

    Args:
        paths: Files, directories or globs.
        base: Directory that plain-file document ids are relative to.

    Yields:
        A `Document` per document read, a `SourceProblem` per source skipped, an
        `UnsupportedFile` per file no reader handles.
    """
    first_seen: dict[str, str] = {}
    for item in iter_files(paths):
        if not isinstance(item, Path):
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


def iter_files(paths: Sequence[str | Path]) -> Iterator[Path | SourceProblem | UnsupportedFile]:
    """Expand paths into the files to read, each once, in a deterministic order.

    An explicitly named file must have a supported suffix (else it is a problem);
    inside directories and glob matches, other files are yielded as
    `UnsupportedFile` to be counted. Hidden files and directories (names
    starting with ".") are left out. Symbolic links to directories are not followed.

    Yields:
        Paths to read, an `UnsupportedFile` per file of another type, and a
        `SourceProblem` for each path that names nothing readable.
    """
    seen: set[str] = set()

    def fresh(path: Path) -> bool:
        key = os.path.abspath(path)
        if key in seen:
            return False
        seen.add(key)
        return True

    def new(items: Iterable[Path | SourceProblem | UnsupportedFile]) -> Iterator[Path | SourceProblem | UnsupportedFile]:
        for item in items:
            if isinstance(item, SourceProblem) or fresh(item if isinstance(item, Path) else item.path):
                yield item

    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            yield from new(_walk(path))
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
                if match.is_dir():
                    yield from new(_walk(match))
                elif match.is_file():
                    yield from new([match if file_kind(match) else UnsupportedFile(match)])
        else:
            yield SourceProblem(str(raw), "no such file or directory")


def _walk(directory: Path) -> Iterator[Path | SourceProblem | UnsupportedFile]:
    errors: list[OSError] = []
    for root, dirs, files in os.walk(directory, onerror=errors.append):
        # Sorted in place so os.walk descends in a stable order.
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if not name.startswith("."):
                path = Path(root, name)
                yield path if file_kind(path) is not None else UnsupportedFile(path)
        while errors:
            error = errors.pop(0)
            yield SourceProblem(str(error.filename or root), error.strerror or str(error))
    for error in errors:
        yield SourceProblem(str(error.filename or directory), error.strerror or str(error))


def read_file(path: Path, *, base: Path | None = None) -> Iterator[Document | SourceProblem]:
    """Read one supported file: usually one document, one per line for `.jsonl`.

    Args:
        path: The file.
        base: Directory that the document id is relative to (not used for `.jsonl`,
            whose lines carry their own ids).

    Yields:
        Documents, and a `SourceProblem` for the file or for each bad part of it.
    """
    source = os.path.abspath(path)
    if file_kind(path) is None:
        yield SourceProblem(source, f"unsupported file type {path.suffix!r}")
        return
    try:
        data = path.read_bytes()
    except OSError as exc:
        yield SourceProblem(source, exc.strerror or str(exc))
        return
    yield from read_bytes(data, Origin(source=source, doc_id=document_id(source, base), name=path.name))


def read_uploads(files: Sequence[tuple[str, bytes]]) -> ScanResult:
    """Read uploaded files with the same readers as files on disk.

    Each file's name (its last component only) is its document id and source, so
    uploading a file again replaces its document.

    Args:
        files: (name as the client sent it, content) pairs.

    Returns:
        Documents and problems; a name used twice keeps its first file.
    """
    result = ScanResult()
    for raw_name, data in files:
        name = upload_name(raw_name or "")
        if not name or name in (".", ".."):
            result.problems.append(SourceProblem(raw_name or "(unnamed)", "an uploaded file needs a file name"))
            continue
        for found in read_bytes(data, Origin(source=name, doc_id=name, name=name)):
            if isinstance(found, SourceProblem):
                result.problems.append(found)
            else:
                result.documents.append(found)
    _drop_duplicate_ids(result)
    return result


def document_id(source: str, base: Path | None) -> str:
    """The path relative to `base` in posix form when inside it, else the absolute path."""
    root = os.path.abspath(base if base is not None else os.curdir)
    absolute = Path(source)
    try:
        return absolute.relative_to(root).as_posix()
    except ValueError:
        return absolute.as_posix()
