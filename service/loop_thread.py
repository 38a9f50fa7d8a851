"""An event loop in a thread of its own: what the sync `RagService` methods run on.

Why not anyio's `start_blocking_portal`: it is a generator context manager, and a
service that is never closed leaves that generator to be finalized by garbage
collection. At interpreter exit that happens after daemon threads have been
frozen, so the generator's cleanup (`portal.call(portal.stop)`) waits forever
for a loop thread that can no longer run: the process hangs on exit with only
the main thread left, parked in `start_blocking_portal`. Here the loop is stopped
by a `weakref.finalize`, which runs when the owner is collected or from an
atexit hook (before daemon threads are frozen), and never waits on the loop from
the loop's own thread.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from typing import Any, Callable, Coroutine, TypeVar

from indexer.errors import IoragError

T = TypeVar("T")

#: Seconds to wait for a new loop thread to report that its loop runs.
START_TIMEOUT = 60.0
#: Seconds to wait for a stopped loop thread to finish its cleanup.
STOP_TIMEOUT = 10.0


class LoopThread:
    """Runs coroutines on one event loop in a daemon thread, for sync callers.

    The loop is running when the constructor returns (an explicit ready event,
    set from inside the loop). `stop()` ends it; a LoopThread that is dropped
    without `stop()` is stopped when collected or at interpreter exit.
    """

    def __init__(self, name: str = "iorag-loop") -> None:
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()
        self.thread = threading.Thread(target=_serve, args=(self.loop, ready), name=name, daemon=True)
        self.thread.start()
        if not ready.wait(START_TIMEOUT):
            raise IoragError(f"the event loop thread {name!r} did not start within {START_TIMEOUT:.0f}s")
        # Holds no reference to self, so it cannot keep this object alive.
        self._finalizer = weakref.finalize(self, _stop, self.loop, self.thread)

    @property
    def running(self) -> bool:
        return self._finalizer.alive and self.thread.is_alive()

    def run(self, make: Callable[[], Coroutine[Any, Any, T]]) -> T:
        """Run the coroutine `make()` builds on the loop and wait for its result.

        Raises:
            RuntimeError: called from the loop's own thread, or after `stop()`.
        """
        if threading.current_thread() is self.thread:
            raise RuntimeError("a sync call from the loop's own thread would wait on itself forever")
        if not self.running:
            raise RuntimeError("this event loop thread is stopped")
        future = asyncio.run_coroutine_threadsafe(make(), self.loop)
        try:
            return future.result()
        except BaseException:
            # Ctrl-C (or any escape) while waiting: do not leave the work running behind the caller.
            future.cancel()
            raise

    def stop(self) -> None:
        """Stop the loop and wait for its thread to clean up (idempotent)."""
        self._finalizer()


def _serve(loop: asyncio.AbstractEventLoop, ready: threading.Event) -> None:
    asyncio.set_event_loop(loop)
    loop.call_soon(ready.set)
    try:
        loop.run_forever()
    finally:
        try:
            tasks = asyncio.all_tasks(loop)
            for task in tasks:
                task.cancel()
            if tasks:
                loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            # Also shuts down the loop's default executor (the `to_thread` workers).
            loop.close()


def _stop(loop: asyncio.AbstractEventLoop, thread: threading.Thread) -> None:
    try:
        loop.call_soon_threadsafe(loop.stop)
    except RuntimeError:
        return  # the loop is closed already
    # From the loop thread itself (a collection that happened there), waiting would never end.
    if threading.current_thread() is not thread:
        thread.join(STOP_TIMEOUT)
