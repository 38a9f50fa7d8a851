"""What DOCX, PPTX and XLSX readers share: telling an encrypted file from a damaged one."""

from __future__ import annotations

import io
import zipfile

from .problems import SourceProblem
from .registry import Origin

#: An OLE compound file: what Office writes for a password-protected file (and for .doc/.xls/.ppt).
_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"


def precheck(data: bytes, origin: Origin, kind: str) -> SourceProblem | None:
    """A problem when the bytes cannot be an Office Open XML file, before a library tries."""
    if data.startswith(_OLE_MAGIC):
        return SourceProblem(
            origin.source, f"encrypted (password-protected) or legacy binary {kind} file; not indexed"
        )
    if not zipfile.is_zipfile(io.BytesIO(data)):
        return SourceProblem(origin.source, f"not a readable {kind} file (damaged or truncated zip)")
    return None


def damaged(origin: Origin, kind: str, exc: Exception) -> SourceProblem:
    return SourceProblem(origin.source, f"not a readable {kind} file (damaged?): {type(exc).__name__}: {exc}"[:300])

