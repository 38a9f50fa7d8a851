"""Which files a scan of some paths reads: hidden names, globs; `in_scope`."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Sequence

from .registry import file_kind

#: A path containing any of these is a glob pattern (unless a file by that name exists).
GLOB_MAGIC = re.compile(r"[*?[]")


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
    if not os.path.isabs(source):
        return False  # an upload's name or "api": never a file a scan reads
    target = os.path.abspath(source)
    for raw in paths:
        path = os.path.abspath(raw)
        if target == path:
            return True
        if _walk_covers(path, target):
            return True
        if GLOB_MAGIC.search(str(raw)) and not os.path.exists(raw):
            pattern = _glob_regex(path)
            # A glob match that is a directory is walked, so any ancestor may be the match.
            candidate = target
            while True:
                if pattern.fullmatch(candidate) and (
                    candidate == target and file_kind(Path(target)) is not None or _walk_covers(candidate, target)
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
    return not any(part.startswith(".") for part in parts) and file_kind(Path(target)) is not None


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
