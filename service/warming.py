"""Warm-up searches of a new generation, answered in a child process so a server's event loop keeps its GIL.

After each write, the server's new generation answers the searches asked again
on the old one before it goes live (`Retriever.warm`). Run in the server's own
interpreter, those searches (a few ms of numpy and Python each, dozens per
write) hold the GIL the event loop needs, and every request waits behind them
while writes stream in. Here one child process ranks them on its own core and
returns only (row id, score) lists; the server reads the few chunks they name
(`Retriever.install`). The child maps the same files, so it costs no copy of
the index, and stays up between writes (its imports are paid once).

The child runs `service.warming.main`, spoken to over its stdin and stdout
in length-prefixed pickles. Not multiprocessing: its spawned children import
the parent's `__main__` again, and a script that embeds iorag without an
`if __name__ == "__main__"` guard would run twice.
"""

from __future__ import annotations

import asyncio
import logging
import os
import pickle
import select
import signal
import struct
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO, Any

from indexer.errors import IoragError
from indexer.store import Snapshot
from indexer.store.snapshot import Manifest

from .retrieval import Ranked, WarmPlan, rank_plan

log = logging.getLogger(__name__)

#: Seconds a child may take to start (imports) on top of a plan's own time before it is given up.
START_SECONDS = 60.0
_LENGTH = struct.Struct("<Q")


class WarmingProcess:
    """One child process, started on first use, that ranks warm-up plans (`rank`); thread-safe."""

    def __init__(self) -> None:
        self._child: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()

    @staticmethod
    def can_rank(snapshot: Snapshot) -> bool:
        """Whether a child can open this generation: FAISS segments are files any process maps,
        while a Milvus Lite file takes one process at a time."""
        return snapshot.manifest.dense.get("backend", "faiss") == "faiss"

    async def rank(self, snapshot: Snapshot, plan: WarmPlan, seconds: float) -> Ranked:
        """The plan's searches ranked on `snapshot`'s generation by the child, for at most `seconds`
        of its time; an empty list when the child cannot (the generation's files already collected
        by a later write, the child gone): warming is an optimisation, searches still answer."""
        request = (snapshot.root, snapshot.manifest, list(plan), seconds)
        return await asyncio.to_thread(self._call, request, seconds + START_SECONDS)

    def _call(self, request: tuple[Any, ...], timeout: float) -> Ranked:
        with self._lock:
            child = self._child
            if child is None or child.poll() is not None:
                try:
                    child = self._child = _start()
                except OSError as exc:
                    log.warning("cannot start the warm-up process (%s); new versions go live unwarmed", exc)
                    return []
            assert child.stdin is not None and child.stdout is not None
            try:
                _write_frame(child.stdin, request)
                ready, _, _ = select.select([child.stdout], [], [], timeout)
                reply = _read_frame(child.stdout) if ready else None
            except OSError:
                reply = None
            if reply is None:
                log.warning("the warm-up process stopped answering; a new one starts with the next write")
                self._stop()
                return []
        status, value = reply
        if status != "ok":
            log.log(logging.INFO if status == "skipped" else logging.WARNING, "warm-up skipped: %s", value)
            return []
        return list(value)

    def _stop(self) -> None:
        child, self._child = self._child, None
        if child is None:
            return
        if child.stdin is not None:
            try:
                child.stdin.close()  # the child's cue to leave
            except OSError:
                pass
        try:
            child.wait(2)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        if child.stdout is not None:
            child.stdout.close()

    def close(self) -> None:
        with self._lock:
            self._stop()


def _start() -> subprocess.Popen[bytes]:
    # The child imports this very copy of iorag, whatever sys.path the parent was given.
    source = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [source, os.environ.get("PYTHONPATH")]))}
    return subprocess.Popen(
        [sys.executable, "-c", "from service.warming import main; main()"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env
    )


def _write_frame(stream: IO[bytes], value: Any) -> None:
    data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_LENGTH.pack(len(data)) + data)
    stream.flush()


def _read_frame(stream: IO[bytes]) -> Any | None:
    """The next value, or None at the end of the stream (the other side is gone)."""
    head = stream.read(_LENGTH.size)
    if len(head) < _LENGTH.size:
        return None
    (size,) = _LENGTH.unpack(head)
    data = stream.read(size)
    return pickle.loads(data) if len(data) == size else None


def _rank_generation(root: Path, manifest: Manifest, plan: WarmPlan, seconds: float) -> Ranked:
    """Open the generation `manifest` names (not whatever is current by now) and rank the plan."""
    with Snapshot(root, manifest) as snapshot:
        return rank_plan(snapshot, plan, seconds)


def main() -> None:
    """The child: rank each plan read from stdin, reply on stdout, leave when stdin closes."""
    # Ctrl-C reaches the whole process group: the server stops the child itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    requests, replies = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # anything printed must not land in the replies
    while (request := _read_frame(requests)) is not None:
        try:
            reply: tuple[str, Any] = ("ok", _rank_generation(*request))
        except IoragError as exc:
            reply = ("skipped", str(exc))
        except Exception as exc:  # a bug: said to the server's log, and the child stays up
            reply = ("error", f"{type(exc).__name__}: {exc}")
        _write_frame(replies, reply)
