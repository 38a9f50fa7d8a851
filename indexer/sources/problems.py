"""What a scan reports besides documents: problems (a source skipped, and why) and its result."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..errors import SourceError
from ..models import Document


@dataclass(frozen=True)
class SourceProblem:
    """A source that was skipped (or partly skipped), and why."""

    source: str
    reason: str

    def __str__(self) -> str:
        return f"{self.source}: {self.reason}"

    def to_error(self) -> SourceError:
        """The same problem as an exception, for callers that treat it as fatal."""
        return SourceError(self.source, self.reason)


@dataclass(frozen=True)
class UnsupportedFile:
    """A file found in a directory or glob that no reader handles: counted, not read."""

    path: Path

    @property
    def kind(self) -> str:
        """Its suffix, lower-cased (`.bin`), or `(no extension)`."""
        return self.path.suffix.lower() or "(no extension)"


@dataclass
class ScanResult:
    """Everything one scan found."""

    documents: list[Document] = field(default_factory=list)
    problems: list[SourceProblem] = field(default_factory=list)
    #: Every file opened, in scan order, whether or not it yielded documents.
    files: list[Path] = field(default_factory=list)
    #: Files of unsupported types met in directories and globs, counted by suffix.
    unsupported: dict[str, int] = field(default_factory=dict)
