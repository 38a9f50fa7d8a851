"""The sync RagService under stress: many fresh services, first calls under CPU load, none may hang.

A hang fails the test (every wait has a timeout) rather than hanging CI.
"""

from __future__ import annotations

import gc
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from indexer import Indexer
from service import RagService, Settings

from ..conftest import ROOT

#: Seconds any one step may take before it counts as a hang (generous: CI shares two cores).
HANG = 90.0
QUESTIONS = ("What does HTTP status 402 mean?", "How are quotas refreshed?", "How do I switch embedding models?")


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("stress") / "index"
    Indexer(path).index([ROOT / "corpora"])
    return path


@pytest.fixture
def cpu_load() -> Iterator[None]:
    """A busy process on one core and a busy thread in this one, for as long as the test runs."""
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    stop = threading.Event()

    def spin() -> None:
        while not stop.is_set():
            sum(range(10_000))

    busy = threading.Thread(target=spin, daemon=True)
    busy.start()
    try:
        yield
    finally:
        stop.set()
        spinner.kill()
        spinner.wait(HANG)
        busy.join(HANG)


def within(seconds: float, work: Callable[[], Any]) -> Any:
    """`work()` in a thread; a hang fails the test after `seconds` instead of blocking it."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = work()
        except BaseException as exc:  # handed to the test below
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        pytest.fail(f"hung: no result within {seconds:.0f}s")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def loop_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "iorag-rag-loop"]


def test_a_service_never_closed_lets_the_script_exit(index_dir: Path) -> None:
    """The reported hang: a script that builds a RagService, asks in a loop and never closes it.

    With the old anyio portal the process hung at exit on every run (the portal's
    generator was finalized after daemon threads were frozen).
    """
    script = textwrap.dedent(
        f"""
        import threading
        from service import RagService, Settings

        rag = RagService(Settings(index_dir={str(index_dir)!r}, search_mode="lexical"))
        for question in {QUESTIONS!r}:
            assert rag.ask(question).sources
        # More left open, one of them first used from another thread.
        others = [RagService(Settings(index_dir={str(index_dir)!r}, search_mode="lexical")) for _ in range(3)]
        worker = threading.Thread(target=lambda: others[0].search("quota"))
        worker.start()
        worker.join()
        for other in others[1:]:
            other.search("quota")
        print("done")
        """
    )
    for _ in range(3):
        started = time.monotonic()
        result = subprocess.run(
            [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=HANG
        )
        assert result.returncode == 0 and result.stdout.strip() == "done", result.stderr
        assert "Traceback" not in result.stderr and time.monotonic() - started < HANG


def test_many_fresh_services_under_cpu_load_never_hang(index_dir: Path, cpu_load: None) -> None:
    before = len(loop_threads())

    def first_call(number: int) -> str:
        # Every eighth one searches densely: it loads the ONNX sessions on its first call.
        mode = "hybrid" if number % 8 == 0 else "lexical"
        rag = RagService(Settings(index_dir=index_dir, search_mode=mode))
        answer = rag.ask(QUESTIONS[number % len(QUESTIONS)])
        assert answer.sources and answer.model == "extractive"
        if number % 3 == 0:
            rag.close()  # the others are dropped unclosed, for the collector to stop
        return answer.sources[0].chunk.doc_id

    doc_ids = []
    for number in range(24):  # 36 services in all
        if number % 4 == 1:
            # Several fresh services whose first calls run in threads at once.
            results: list[str] = []
            threads = [
                threading.Thread(target=lambda n=n: results.append(first_call(n)), daemon=True)
                for n in range(number * 10, number * 10 + 3)
            ]
            within(HANG, lambda: [t.start() for t in threads] and [t.join(HANG) for t in threads])
            assert len(results) == 3, "a first call in a thread failed or hung"
            doc_ids.extend(results)
        else:
            doc_ids.append(within(HANG, lambda: first_call(number)))
    assert all(doc_ids)

    # Two threads making the first call of one service together share one loop thread.
    rag = RagService(Settings(index_dir=index_dir, search_mode="lexical"))
    results = []
    pair = [threading.Thread(target=lambda: results.append(rag.search("quota")), daemon=True) for _ in range(2)]
    within(HANG, lambda: [t.start() for t in pair] and [t.join(HANG) for t in pair])
    assert len(results) == 2 and results[0] == results[1]
    within(HANG, rag.close)

    # Every loop thread ends: closed services at close, dropped ones when collected.
    gc.collect()
    deadline = time.monotonic() + HANG
    while len(loop_threads()) > before and time.monotonic() < deadline:
        time.sleep(0.05)
        gc.collect()
    assert len(loop_threads()) == before


def test_a_closed_service_refuses_further_sync_calls_cleanly(index_dir: Path) -> None:
    rag = RagService(Settings(index_dir=index_dir, search_mode="lexical"))
    assert within(HANG, lambda: rag.search("quota"))
    within(HANG, rag.close)
    # A new call after close starts a new loop thread, and closing again releases it.
    assert within(HANG, lambda: rag.search("quota"))
    within(HANG, rag.close)
    within(HANG, rag.close)  # idempotent
