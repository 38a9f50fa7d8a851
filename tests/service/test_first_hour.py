"""What a new user meets in the first hour: make targets, serve, empty indexes, progress,
citations, empty questions and sync calls in async code, each as the user meets it."""

from __future__ import annotations

import asyncio
import random
import re
import socket
import subprocess
from pathlib import Path

import pytest

from indexer import ConfigError, Document, Indexer
from indexer.store import IndexDirectory
from service import RagService, Settings
from service.citations import CitationRenumberer, cited_numbers, renumber_citations

from ..conftest import ROOT, SAMPLE_DOCS, write_corpus
from .test_cli import iorag

CORPORA = ROOT / "corpora"


# --- make run installs only what running needs ---------------------------------------------


def _make_dry_run(target: str, venv: Path) -> list[str]:
    result = subprocess.run(
        ["make", "-n", target, f"VENV={venv}"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return [line for line in result.stdout.splitlines() if "pip install" in line and "--upgrade pip" not in line]


def test_make_run_installs_runtime_dependencies_only(tmp_path: Path) -> None:
    (install,) = _make_dry_run("run", tmp_path / "venv")
    assert install.endswith("pip install --quiet -e .") and "[test]" not in install
    (install,) = _make_dry_run("test", tmp_path / "venv")
    assert install.endswith('pip install --quiet -e ".[test]"')


# --- serve on a taken port ---------------------------------------------------------------


def test_serve_on_a_taken_port_fails_in_one_line_with_status_1(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = iorag("serve", "--port", str(port), cwd=tmp_path, timeout=60)
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and str(port) in lines[0] and "in use" in lines[0]


# --- nothing to index, nothing indexed ---------------------------------------------------


def test_indexing_a_missing_path_publishes_nothing_and_names_it(tmp_path: Path) -> None:
    result = iorag("index", "no/such/folder", "--index", "fresh", cwd=tmp_path)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert "no/such/folder" in line and "no such file" in line
    assert IndexDirectory(tmp_path / "fresh").current_id() is None
    # A folder holding no supported file is named too.
    write_corpus(tmp_path / "binaries", {"data.bin": "x"})
    result = iorag("index", "binaries", "--index", "fresh", cwd=tmp_path)
    assert result.returncode == 1 and "binaries" in result.stderr and ".md" in result.stderr
    assert IndexDirectory(tmp_path / "fresh").current_id() is None
    # Searching it says there is no index, and how to make one.
    search = iorag("search", "anything", "--index", "fresh", cwd=tmp_path)
    assert search.returncode == 1 and "Traceback" not in search.stderr
    (line,) = search.stderr.strip().splitlines()
    assert "no index" in line and "iorag index PATH --index fresh" in line


def test_a_folder_that_is_gone_still_removes_its_documents(tmp_path: Path) -> None:
    corpus = write_corpus(tmp_path / "corpus", SAMPLE_DOCS)
    index = tmp_path / "index"
    Indexer(index).index([corpus / "notes"])
    for path in (corpus / "notes").iterdir():
        path.unlink()
    (corpus / "notes").rmdir()
    report = Indexer(index).index([corpus / "notes"])
    assert report.removed == 1 and report.documents == 0


def test_search_on_an_emptied_index_says_it_holds_nothing(tmp_path: Path) -> None:
    indexer = Indexer(tmp_path / "index")
    indexer.add_documents([Document(id="tea", text="Green tea is steeped at 80 degrees.")])
    indexer.delete_documents(["tea"])
    result = iorag("search", "tea", "--index", "index", cwd=tmp_path)
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert "holds no documents" in line and "iorag index PATH --index index" in line


# --- progress through every stage -----------------------------------------------------------


def test_progress_covers_scanning_chunking_and_embedding(tmp_path: Path) -> None:
    corpus = write_corpus(tmp_path / "corpus", SAMPLE_DOCS)
    seen: list[tuple[str, int, int]] = []
    report = Indexer(tmp_path / "index", on_stage=lambda *event: seen.append(event)).index([corpus])
    stages = list(dict.fromkeys(stage for stage, _, _ in seen))
    assert stages == ["scanning", "chunking", "embedding"]
    scanned = [done for stage, done, _ in seen if stage == "scanning"]
    assert scanned == list(range(1, len(SAMPLE_DOCS) + 1))
    chunking = [(done, total) for stage, done, total in seen if stage == "chunking"]
    text_chars = sum(len(d.text) for d in _documents(corpus))
    assert all(total == text_chars for _, total in chunking) and chunking[-1][0] == text_chars
    assert [done for done, _ in chunking] == sorted(done for done, _ in chunking)
    embedding = [(done, total) for stage, done, total in seen if stage == "embedding"]
    assert embedding[-1] == (report.chunks_embedded, report.chunks_embedded)


def _documents(corpus: Path) -> list[Document]:
    from indexer import scan

    return scan([corpus]).documents


# --- citations renumbered 1..n -----------------------------------------------------------


def test_renumbering_cites_sources_in_order_without_gaps() -> None:
    keys = ["a", "b", "c", "a", "e"]  # [1] and [4] are the same chunk
    text, cited = renumber_citations("X [3]. Y [1; 3] and [2-4]. In [2019], see [9] or [4, 9]. Open [5", keys)
    assert text == "X [1]. Y [2, 1] and [3, 1, 2]. In [2019], see [9] or [2]. Open [5"
    assert cited == [2, 0, 1]


@pytest.mark.parametrize("seed", range(20))
def test_renumbering_a_stream_equals_renumbering_the_whole(seed: int) -> None:
    rng = random.Random(seed)
    pieces = ["word ", "[", "1", "]", "[3", ", 2]", " [2-", "4] ", "[x] ", "[12]", "[", "7", "]", "."]
    text = "".join(rng.choice(pieces) for _ in range(60))
    keys = [f"k{i % 5}" for i in range(8)]
    whole, cited = renumber_citations(text, keys)
    renumberer = CitationRenumberer(keys)
    cuts = sorted(rng.sample(range(1, len(text)), min(15, len(text) - 1)))
    parts = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)])]
    streamed = "".join(renumberer.feed(part) for part in parts) + renumberer.flush()
    assert streamed == whole and renumberer.cited == cited
    # Every citation that names a source now reads 1, 2, 3... in order of first appearance.
    assert [n for n in cited_numbers(whole) if n <= len(keys)] == list(range(1, len(cited) + 1))


def test_cli_extractive_answer_lists_its_cited_sources_one_to_n(tmp_path: Path) -> None:
    assert iorag("index", str(CORPORA), cwd=tmp_path).returncode == 0
    result = iorag("ask", "What does HTTP status 402 mean? And what happens on a 429?", "-k", "8", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    answer, _, listing = result.stdout.partition("\n\n")
    numbers = list(dict.fromkeys(int(n) for n in re.findall(r"\[(\d+)\]", answer)))
    assert numbers == list(range(1, len(numbers) + 1)) and numbers
    listed = [int(line[1 : line.index("]")]) for line in listing.splitlines() if line.startswith("[")]
    assert listed == numbers


# --- sync calls inside a running event loop ------------------------------------------------


def test_sync_calls_inside_an_event_loop_name_the_async_twin(tmp_path: Path) -> None:
    indexer = Indexer(tmp_path / "index")
    indexer.add_documents([Document(id="tea", text="Green tea is steeped at 80 degrees.")])

    async def misuse() -> list[str]:
        messages = []
        for call in (
            lambda: indexer.index([tmp_path]),
            lambda: indexer.add_documents([]),
            lambda: indexer.delete_documents(["tea"]),
        ):
            with pytest.raises(ConfigError) as caught:
                call()
            messages.append(caught.value.user_message())
        rag = RagService(Settings(index_dir=tmp_path / "index"))
        for call in (lambda: rag.search("tea"), lambda: rag.ask("tea?"), lambda: rag.add_documents([])):
            with pytest.raises(ConfigError) as caught:
                call()
            messages.append(caught.value.user_message())
        # The async twins work in the same place.
        assert (await rag.asearch("green tea"))[0].chunk.doc_id == "tea"
        await rag.aclose()
        return messages

    messages = asyncio.run(misuse())
    twins = ["Indexer.aindex", "Indexer.aadd_documents", "Indexer.adelete_documents",
             "RagService.asearch", "RagService.aask", "RagService.aadd_documents"]
    for message, twin in zip(messages, twins):
        assert "running event loop" in message and f"await {twin}(" in message
