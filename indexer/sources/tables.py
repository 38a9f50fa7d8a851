"""Table rows as text lines: `Header: value; ...` under a header row, else `a | b | c`."""

from __future__ import annotations

import datetime as dt
from typing import Any, Sequence


def cell_text(value: Any) -> str:
    """A cell's value as text: whole floats without `.0`, dates in ISO form, None as empty."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    return " ".join(str(value).split())


class RowFormatter:
    """Renders the rows of one table; the first non-empty row is its header when it looks like one.

    A header row is one whose cells are all non-empty text (not numbers). Rows under it repeat
    the column names, so every chunk of a long table still says what its numbers are.
    """

    def __init__(self) -> None:
        self.header: list[str] | None = None
        self._seen_first = False

    def line(self, cells: Sequence[str]) -> str:
        """The text of one row (already cell_text'ed); empty for an empty row."""
        cells = list(cells)
        while cells and not cells[-1]:
            cells.pop()
        if not cells:
            return ""
        if not self._seen_first:
            self._seen_first = True
            if len(cells) > 1 and all(c and not _numeric(c) for c in cells):
                self.header = cells
        elif self.header is not None:
            pairs = [
                f"{self.header[i] if i < len(self.header) else f'column {i + 1}'}: {c}"
                for i, c in enumerate(cells)
                if c
            ]
            return "; ".join(pairs)
        return " | ".join(cells)


def _numeric(text: str) -> bool:
    try:
        float(text.replace(",", ""))
    except ValueError:
        return False
    return True
