"""Capturing every log line the process emits, for tests that check what logs may hold."""

from __future__ import annotations

import logging
from contextlib import contextmanager
from typing import Iterator


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@contextmanager
def captured_log_lines() -> Iterator[list[str]]:
    """Every log line, DEBUG and up, from any logger while the block runs (the root level is restored after)."""
    handler = _Collect()
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield handler.lines
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
