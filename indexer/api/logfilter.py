"""Keeps bearer tokens out of what httpx and httpcore log.

At DEBUG level httpcore logs every response's headers; an upstream that
echoes the caller's `Authorization` in a header would put the key in the log.
The filter rewrites such records before any handler sees them.
"""

from __future__ import annotations

import logging
import re

_BEARER = re.compile(r"(?i)(bearer\s+)[^\s\"',;)\]]+")
#: Header tuples as httpcore logs them: (b'name', b'value'), with a name that speaks of secrets.
_SECRET_HEADER = re.compile(r"(?i)(\(b?['\"][^'\"]*(?:authorization|api-key|apikey|token|secret)[^'\"]*['\"],\s*b?['\"])[^'\"]*")
#: The loggers httpx and httpcore log through (filters apply where a record is made, not to children).
LOGGERS = ("httpx", "httpcore.connection", "httpcore.http11", "httpcore.http2", "httpcore.proxy")


class RedactSecrets(logging.Filter):
    """Replaces bearer tokens and secret-named header values in a record's message with ***."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = _SECRET_HEADER.sub(r"\1***", _BEARER.sub(r"\1***", message))
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


_FILTER = RedactSecrets()


def install() -> None:
    """Attach the filter to httpx's and httpcore's loggers (idempotent)."""
    for name in LOGGERS:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)


__all__ = ["LOGGERS", "RedactSecrets", "install"]
