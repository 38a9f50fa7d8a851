"""Guarding the sync facades (`Indexer.index`, `RagService.ask`, ...) against use inside async code."""

from __future__ import annotations

import asyncio

from .errors import ConfigError


def refuse_inside_event_loop(call: str, twin: str) -> None:
    """Raise a ConfigError naming the async twin when the calling thread runs an event loop.

    A sync call there would either fail deep inside asyncio or block every other
    task on that loop until it returns; `await`ing the twin does neither.

    Args:
        call: what was called, as users write it (`Indexer.index`).
        twin: the async method to await instead (`Indexer.aindex`).

    Raises:
        ConfigError: an event loop is running in this thread.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    raise ConfigError(
        f"{call}() was called inside a running event loop",
        hint=f"in async code, use `await {twin}(...)` instead",
    )
