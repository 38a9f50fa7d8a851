"""Faults, proved end to end: `iorag index` runs as a real process against the fake API.

What each test shows (the issue's acceptance criteria):

1. Twenty `kill -9`s at random moments while indexing 2,000 documents, then one
   more run: the index equals a clean build, and the API was paid for at most
   one round of in-flight requests per kill beyond the clean build's tokens.
2. A rerun on an unchanged corpus sends nothing; an edit sends only the changed
   chunks; a deleted document leaves every search mode.
3. A quota exhausted midway ends the run with exit status 3 and one clear line;
   after the refresh a rerun completes, and no text is embedded twice.
4. `--dry-run` predicts the requests and tokens the real run sends.
5. Damaged input files are skipped by name; a damaged index gives one error
   line (exit 1) with a way out, never a traceback.

The fake API reads each request body before its latency, as a real server
does: a request whose sender dies while it waits is still answered, logged and
billed, so the token counts below are what an API would charge, not only what
a surviving client saw.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest

from indexer import Chunk, IndexDirectory, default_catalog
from indexer.store import EmbeddingCache
from indexer.embedding import normalize
from indexer.store import DocumentRecord
from service import RagService, Settings

from .fakeapi import MXBAI, FakeConfig, FakeServer, RequestRecord, fake_vector, text_hash

MODEL = MXBAI
DIMS = 1024
#: Requests the CLI keeps in flight (IORAG_CONCURRENCY); one "round" of a kill.
CONCURRENCY = 4
#: Inputs per request (IORAG_EMBED_BATCH_ITEMS): small, so a run is many requests and a kill lands between them.
BATCH_ITEMS = 16
EXIT_QUOTA = 3

WORDS = (
    "river mountain quota index vector token batch chunk search cache snapshot kernel lattice harbor "
    "meadow signal orbit prism falcon copper velvet tundra saffron glacier ember canyon willow basalt "
    "comet lantern atlas pepper cobalt marble juniper quartz nectar rover summit beacon fjord delta "
    "thistle cinder nebula walnut orchard piston anvil compass ledger"
).split()


# -- corpus ------------------------------------------------------------------------


def make_corpus(root: Path, count: int, seed: int) -> Path:
    """Write `count` small deterministic documents: a third markdown with headings, the rest plain text.

    Lengths vary from one sentence to a dozen paragraphs; every sentence names its
    document, so no two documents share a chunk text.
    """
    rng = random.Random(seed)
    for i in range(count):

        def words(n: int) -> str:
            return " ".join(rng.choice(WORDS) for _ in range(n))

        def paragraph() -> str:
            sentences = rng.randint(1, 3)
            return " ".join(f"Note {i}.{rng.randint(0, 99)} on {words(rng.randint(4, 14))}." for _ in range(sentences))

        size = rng.choice([1, 1, 1, 2, 2, 3, 4, 12])
        if i % 3 == 0:
            sections = [f"# Document {i}: {words(3)}\n\n{paragraph()}\n"]
            sections += [f"## Part {s} {words(2)}\n\n{paragraph()}\n" for s in range(size // 2)]
            name, text = f"d{i // 100:02d}/doc{i:04d}.md", "\n".join(sections)
        else:
            name, text = f"d{i // 100:02d}/doc{i:04d}.txt", "\n\n".join(paragraph() for _ in range(size))
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


# -- the fake API and the command ----------------------------------------------------------


@contextmanager
def fake_api(**knobs: Any) -> Iterator[FakeServer]:
    with FakeServer(FakeConfig(**knobs)) as server:
        yield server


def command(*args: str | Path) -> list[str]:
    return [sys.executable, "-m", "service", *map(str, args)]


def environment(server: FakeServer, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("IORAG_", "IOINTELLIGENCE_"))}
    env.update(
        IOINTELLIGENCE_API_KEY=server.config.api_key,
        IOINTELLIGENCE_BASE_URL=server.base_url,
        IORAG_EMBEDDING_MODEL=MODEL,
        IORAG_CONCURRENCY=str(CONCURRENCY),
        IORAG_EMBED_BATCH_ITEMS=str(BATCH_ITEMS),
    )
    env.update(extra)
    return env


def iorag(
    server: FakeServer, *args: str | Path, cwd: Path, timeout: float = 120, **env: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command(*args), cwd=cwd, env=environment(server, **env), capture_output=True, text=True, timeout=timeout
    )


def index_json(server: FakeServer, *args: str | Path, cwd: Path, **env: str) -> dict[str, Any]:
    """Run `iorag index ... --json`, expect success, return the report."""
    result = iorag(server, "index", *args, "--json", cwd=cwd, **env)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def search_ids(server: FakeServer, index: Path, query: str, mode: str, *, cwd: Path) -> list[str]:
    result = iorag(server, "search", query, "--index", index, "--mode", mode, "-k", "1000", "--json", cwd=cwd)
    assert result.returncode == 0, result.stderr
    return [hit["doc_id"] for hit in json.loads(result.stdout)["results"]]


def tokens(records: list[RequestRecord]) -> int:
    return sum(sum(r.tokens) for r in records)


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The single `iorag: error:` line a failed command must print, and nothing else."""
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("iorag: error: "), result.stderr
    return lines[0]


# -- what "the same index" means ----------------------------------------------------------


def query_vector(query: str) -> np.ndarray:
    """What the fake answers for a search query: its vector of the model's query template."""
    text = default_catalog().get(MODEL, kind="embedding").format_query(query)
    return normalize(fake_vector(MODEL, text, DIMS))


@dataclass
class IndexState:
    """What must be equal for two indexes to be the same, as far as anyone can tell."""

    documents: dict[str, DocumentRecord]
    chunks: list[Chunk]
    vectors: np.ndarray
    #: Per probe query: (chunk id, score) of the ten nearest chunks.
    found: list[list[tuple[str, float]]]


def read_index(index: Path, probes: list[str]) -> IndexState:
    with IndexDirectory(index).open_current() as snap:
        chunks = snap.chunks()
        vectors = snap.vectors_for([c.chunk_id for c in chunks])
        queries = np.stack([query_vector(q) for q in probes])
        found = [[(hit.chunk.chunk_id, round(hit.score, 5)) for hit in row] for row in snap.search(queries, 10)]
        return IndexState(snap.documents(), chunks, vectors, found)


def assert_each_chunk_once_with_its_own_vector(state: IndexState) -> None:
    """One vector per chunk, no chunk twice, and each vector is the fake's vector of that chunk's own text."""
    ids = [c.chunk_id for c in state.chunks]
    assert len(ids) == len(set(ids)), "a chunk appears twice"
    positions = [(c.doc_id, c.ordinal) for c in state.chunks]
    assert len(positions) == len(set(positions)), "a document holds two chunks at one position"
    assert state.vectors.shape == (len(state.chunks), DIMS)
    expected = np.stack([normalize(fake_vector(MODEL, c.embedding_text, DIMS)) for c in state.chunks])
    np.testing.assert_allclose(state.vectors, expected, atol=1e-6)


# -- 1. kill -9 ----------------------------------------------------------------------------------


@dataclass
class Run:
    start: int  # position in the fake's log when the run started
    killed: bool
    aim: str  # where the kill was aimed: "before embedding" or "while embedding"
    records: list[RequestRecord] = field(default_factory=list)


def wait_for_quiet_log(server: FakeServer, quiet: float = 0.15, limit: float = 10.0) -> None:
    """Until the fake has logged nothing new for `quiet` s: requests a killed run left in flight are done."""
    deadline = time.monotonic() + limit
    seen = len(server.log.records)
    since = time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.03)
        now = len(server.log.records)
        if now != seen:
            seen, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return


@pytest.mark.slow
def test_twenty_kill9s_then_one_run_equal_a_clean_build(tmp_path: Path) -> None:
    corpus = make_corpus(tmp_path / "corpus", 2000, seed=7)
    rng = random.Random(20)
    probes = [" ".join(rng.sample(WORDS, 3)) for _ in range(20)]
    began = time.monotonic()
    with fake_api(latency=0.03, seed=5) as server:
        # The clean build: the reference index, its bill, and how long a run takes to start sending.
        started = time.time()
        clean = index_json(server, corpus, "--index", tmp_path / "clean", cwd=tmp_path)
        clean_records = server.log.ok()
        assert len(clean_records) == len(server.log.records) == clean["requests_planned"]
        clean_tokens = tokens(clean_records)
        to_first_request = min(r.at for r in clean_records) - started
        server.reset(server.config)

        runs: list[Run] = []
        env = environment(server)
        target = tmp_path / "killed"
        for _ in range(20):
            mark = len(server.log.records)
            with open(tmp_path / "stderr.txt", "w") as err:
                proc = subprocess.Popen(command("index", corpus, "--index", target), cwd=tmp_path, env=env,
                                        stdout=subprocess.DEVNULL, stderr=err)
            if rng.random() < 0.25:
                # Anywhere from startup to the first answer: scanning, chunking, opening the cache.
                aim, until = "before embedding", time.monotonic() + rng.uniform(0.0, to_first_request)
                while time.monotonic() < until and len(server.log.records) == mark and proc.poll() is None:
                    time.sleep(0.002)
                delay = 0.0
            else:
                # Once a random number of this run's requests were answered, plus a moment: the
                # kill lands with requests at every stage, sent, answered, being saved.
                aim, answered, delay = "while embedding", rng.randint(1, 20), rng.uniform(0.0, 0.05)
                deadline = time.monotonic() + 60
                while len(server.log.records) < mark + answered and proc.poll() is None:
                    assert time.monotonic() < deadline, "the run never got going"
                    time.sleep(0.002)
            try:
                code = proc.wait(timeout=delay)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                code = proc.wait()
            killed = code == -signal.SIGKILL
            assert killed or code == 0, (tmp_path / "stderr.txt").read_text()
            wait_for_quiet_log(server)
            runs.append(Run(mark, killed, aim))

        final_mark = len(server.log.records)
        final = index_json(server, corpus, "--index", target, cwd=tmp_path)
        log = server.log.records
        assert all(r.ok for r in log), Counter(r.status for r in log)
        for run, end in zip(runs, [r.start for r in runs[1:]] + [final_mark]):
            run.records = log[run.start : end]
        final_records = log[final_mark:]
        assert final["chunks"] == clean["chunks"]

        # Exactly the clean build's texts were paid for, each at least once.
        sent = Counter(h for r in log for h in r.hashes)
        clean_texts = Counter(h for r in clean_records for h in r.hashes)
        assert set(sent) == set(clean_texts) and max(clean_texts.values()) == 1

        # What was paid twice was in flight when a run died: at most CONCURRENCY requests per kill.
        allowance = 0
        wasted_per_kill: list[int] = []
        for i, run in enumerate(runs):
            later = {h for other in runs[i + 1 :] for r in other.records for h in r.hashes}
            later |= {h for r in final_records for h in r.hashes}
            wasted = [r for r in run.records if later & set(r.hashes)]
            if not run.killed:
                assert not wasted, "a run that finished left work to redo"
                continue
            wasted_per_kill.append(len(wasted))
            assert len(wasted) <= CONCURRENCY, f"kill {i} wasted {len(wasted)} requests"
            allowance += sum(sorted((sum(r.tokens) for r in run.records), reverse=True)[:CONCURRENCY])
        received = tokens(log)
        assert received <= clean_tokens + allowance

        # The same index: documents, chunks, vectors and what searches find.
        killed_state, clean_state = read_index(target, probes), read_index(tmp_path / "clean", probes)
        assert killed_state.documents == clean_state.documents
        assert killed_state.chunks == clean_state.chunks
        np.testing.assert_array_equal(killed_state.vectors, clean_state.vectors)
        assert killed_state.found == clean_state.found
        assert_each_chunk_once_with_its_own_vector(killed_state)
        hybrid: dict[str, list[list[str]]] = {}
        for name in ("killed", "clean"):
            with RagService(Settings(api_key=server.config.api_key, base_url=server.base_url,
                                     index_dir=tmp_path / name, reload_interval=0)) as service:
                hybrid[name] = [[h.chunk.chunk_id for h in service.search(q, top_k=10)] for q in probes[:5]]
        assert hybrid["killed"] == hybrid["clean"]
    assert not list((target / "snapshots").glob(".tmp-*")), "an unfinished snapshot was left behind"

    kills = [r for r in runs if r.killed]
    mid_run = [r for r in kills if r.records]
    summary = (
        f"\nkill -9: {len(kills)} killed ({len(mid_run)} after requests were sent), "
        f"{len(runs) - len(kills)} finished first; "
        f"clean build {clean['chunks']} chunks, {clean_tokens} tokens in {len(clean_records)} requests; "
        f"received {received} tokens in {len(log)} requests (+{received - clean_tokens}, allowance {allowance}); "
        f"runs (aim, requests, killed) {[(r.aim.split()[0], len(r.records), r.killed) for r in runs]}; "
        f"wasted requests per kill {wasted_per_kill}; final run embedded {final['chunks_embedded']} chunks; "
        f"{time.monotonic() - began:.1f}s"
    )
    print(summary)
    assert len(mid_run) >= 10, f"too few kills landed while embedding to prove anything: {summary}"


# -- 2. incremental ----------------------------------------------------------------------


GUIDE = """# Field guide

The guide covers harbors and their beacons.

## Tides

Tides rise twice a day along the fjord.

## Lanterns

Lanterns burn walnut oil through the night.
"""


def test_rerun_sends_nothing_an_edit_sends_its_changed_chunks_and_a_delete_leaves_every_mode(
    tmp_path: Path,
) -> None:
    corpus = make_corpus(tmp_path / "corpus", 40, seed=2)
    (corpus / "guide.md").write_text(GUIDE, encoding="utf-8")
    (corpus / "obsolete.txt").write_text("The zanzibarite ledger was retired last spring.", encoding="utf-8")
    index = tmp_path / "idx"
    with fake_api(latency=0.005) as server:
        first = index_json(server, corpus, "--index", index, cwd=tmp_path)
        assert first["published"] and first["documents"] == 42

        server.reset(server.config)
        again = index_json(server, corpus, "--index", index, cwd=tmp_path)
        assert server.log.of("embeddings") == [], "an unchanged corpus was sent again"
        assert not again["published"] and again["unchanged"] == 42

        with IndexDirectory(index).open_current() as snap:
            before = {c.embedding_text for c in snap.chunks()}
        guide = corpus / "guide.md"
        guide.write_text(GUIDE.replace("twice a day", "twice a day, higher at full moon,"), encoding="utf-8")
        server.reset(server.config)
        edited = index_json(server, corpus, "--index", index, cwd=tmp_path)
        with IndexDirectory(index).open_current() as snap:
            after = {c.embedding_text for c in snap.chunks()}
            guide_chunks = [c for c in snap.chunks() if c.doc_id.endswith("guide.md")]
        sent = [text for record in server.log.ok() for text in record.inputs]
        assert sorted(sent) == sorted(after - before), "the fake must receive exactly the changed chunks"
        assert len(sent) == 1 and "full moon" in sent[0], sent
        assert len(guide_chunks) == 3, "the untouched sections of the edited document were not re-sent"
        assert edited["updated"] == 1 and edited["unchanged"] == 41 and edited["chunks_embedded"] == 1

        with IndexDirectory(index).open_current() as snap:
            (obsolete,) = [d for d in snap.documents() if d.endswith("obsolete.txt")]
        modes = ("dense", "lexical", "hybrid")
        for mode in modes:
            assert obsolete in search_ids(server, index, "zanzibarite ledger", mode, cwd=tmp_path), mode
        (corpus / "obsolete.txt").unlink()
        server.reset(server.config)
        deleted = index_json(server, corpus, "--index", index, cwd=tmp_path)
        assert deleted["removed"] == 1 and deleted["documents"] == 41
        assert server.log.of("embeddings") == [], "a deletion needs no embedding"
        for mode in modes:
            found = search_ids(server, index, "zanzibarite ledger", mode, cwd=tmp_path)
            assert found and obsolete not in found, mode


# -- 3. quota ------------------------------------------------------------------------------


def test_quota_exhausted_midway_exits_3_and_a_rerun_after_the_refresh_completes_without_duplicates(
    tmp_path: Path,
) -> None:
    corpus = make_corpus(tmp_path / "corpus", 300, seed=3)
    index = tmp_path / "idx"
    # Time on tokens after admission: requests admitted before the quota ran out are
    # still being worked on when another is refused, as on the real API.
    with fake_api(latency=0.005, latency_per_1k_tokens=0.2) as server:
        small = {"IORAG_EMBED_BATCH_ITEMS": "8"}  # many requests, so several are in flight at the refusal
        plan = index_json(server, corpus, "--index", index, "--dry-run", cwd=tmp_path, **small)
        # Room for 60% of the tokens: the first run stops midway, the rerun after the refresh fits.
        server.config.quota = {MODEL: plan["tokens_to_embed"] * 6 // 10}

        result = iorag(server, "index", corpus, "--index", index, cwd=tmp_path, **small)
        assert result.returncode == EXIT_QUOTA, result.stderr
        line = one_error_line(result)
        match = re.search(r"(\d+) of (\d+) new chunks embedded and saved, (\d+) left", line)
        assert match, line
        done, total, left = map(int, match.groups())
        assert 0 < done < total == plan["chunks_to_embed"] and done + left == total
        assert "quota" in line and "rerun" in line and "resumes" in line
        assert IndexDirectory(index).current_id() is None, "a partial index was published"
        with EmbeddingCache(index / "cache.sqlite") as cache:
            assert cache.count(MODEL) == done, "the message must say what is really saved"
        refused = [r for r in server.log.of("embeddings") if r.fault == "quota"]
        assert refused, "the quota never ran out"

        server.refresh_quota()
        report = index_json(server, corpus, "--index", index, cwd=tmp_path, **small)
        assert report["published"] and report["cached_chunks"] == done and report["chunks_embedded"] == left

        counts = server.log.embedded_counts()
        twice = [h for h, n in counts.items() if n > 1]
        assert not twice, f"{len(twice)} texts were paid for twice"
        with IndexDirectory(index).open_current() as snap:
            texts = {text_hash(c.embedding_text) for c in snap.chunks()}
        assert set(counts) == texts and len(texts) == total


# -- 4. dry run ------------------------------------------------------------------------------


def test_dry_run_predicts_requests_and_tokens_within_5_percent(tmp_path: Path) -> None:
    corpus = make_corpus(tmp_path / "corpus", 300, seed=4)
    index = tmp_path / "idx"
    # Four inputs a request, so even the edits below take several requests to send.
    small = {"IORAG_EMBED_BATCH_ITEMS": "4"}

    def close(predicted: int, actual: int) -> bool:
        return abs(predicted - actual) <= 0.05 * actual

    with fake_api(latency=0.005) as server:
        outcomes = []
        for step in ("fresh", "edited"):
            if step == "edited":
                for number in (1, 2, 3, 5, 9, 30):  # plain text and markdown, short and long
                    path = next(corpus.glob(f"d00/doc{number:04d}.*"))
                    text = path.read_text(encoding="utf-8").replace(" on ", " about ")
                    extra = "".join(f"\n\nAddendum {k} on {' '.join(WORDS[k:k + 12])}." for k in range(3))
                    path.write_text(text + extra, encoding="utf-8")
            current = IndexDirectory(index).current_id()
            server.reset(server.config)
            dry = index_json(server, corpus, "--index", index, "--dry-run", cwd=tmp_path, **small)
            assert server.log.records == [], "a dry run sent a request"
            assert IndexDirectory(index).current_id() == current, "a dry run changed the index"
            real = index_json(server, corpus, "--index", index, cwd=tmp_path, **small)
            sent = server.log.ok()
            assert len(sent) == len(server.log.records)
            outcomes.append((step, dry["requests_planned"], len(sent), dry["tokens_to_embed"], tokens(sent)))
            assert close(dry["requests_planned"], len(sent)), outcomes[-1]
            assert close(dry["tokens_to_embed"], tokens(sent)), outcomes[-1]
            assert dry["chunks_to_embed"] == real["chunks_embedded"] > 0
        assert outcomes[1][2] > 1, "the edits should take several requests"
        print(f"\ndry run (step, requests predicted/sent, tokens predicted/sent): {outcomes}")


# -- 5. damaged files -----------------------------------------------------------------------


def test_damaged_corpus_files_are_skipped_by_name_and_the_rest_indexed(tmp_path: Path) -> None:
    corpus = make_corpus(tmp_path / "corpus", 12, seed=5)
    (corpus / "latin1.txt").write_bytes("Caf\xe9 cr\xe8me, written as Latin-1.".encode("latin-1"))
    (corpus / "records.jsonl").write_text(
        '{"_id": "rec-1", "title": "One", "text": "The first record is whole."}\n'
        '{"_id": "rec-2", "text": "The second record is whole too."}\n'
        '{"_id": "rec-3", "text": "The third record was cut off mid',
        encoding="utf-8",
    )
    (corpus / "diagram.md").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x01\x00" + bytes(range(256)))
    index = tmp_path / "idx"
    with fake_api() as server:
        result = iorag(server, "index", corpus, "--index", index, "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    skipped = result.stderr.strip().splitlines()
    assert len(skipped) == 2, result.stderr
    assert any(line.startswith(f"iorag: skipped {corpus / 'records.jsonl'}:3: invalid JSON") for line in skipped)
    assert f"iorag: skipped {corpus / 'diagram.md'}: binary file" in skipped
    report = json.loads(result.stdout)
    # Latin-1 is detected and decoded, not refused.
    assert report["documents"] == 12 + 3
    with IndexDirectory(index).open_current() as snap:
        documents = snap.documents()
    assert {"rec-1", "rec-2"} <= set(documents) and "rec-3" not in documents
    assert not any(i.endswith("diagram.md") for i in documents)
    [latin1] = [d for i, d in documents.items() if i.endswith("latin1.txt")]
    assert latin1.text == "Café crème, written as Latin-1." and latin1.metadata == {"encoding": "cp1252"}


def test_a_truncated_cache_or_a_missing_snapshot_file_is_one_clear_error_line(tmp_path: Path) -> None:
    corpus = make_corpus(tmp_path / "corpus", 30, seed=6)
    index = tmp_path / "idx"
    with fake_api() as server:
        index_json(server, corpus, "--index", index, cwd=tmp_path)
        cache = index / "cache.sqlite"

        # A snapshot file deleted: search and index both stop with one line naming it, and
        # following its advice rebuilds the index from the cache without paying again.
        for name in ("vectors.npy", "chunks.sqlite"):
            snapshot = IndexDirectory(index).snapshots_dir / str(IndexDirectory(index).current_id())
            [path] = snapshot.rglob(name)
            path.unlink()
            for args in (("search", "quartz", "--index", index), ("index", corpus, "--index", index)):
                result = iorag(server, *args, cwd=tmp_path)
                assert result.returncode == 1, (name, args, result.stderr)
                line = one_error_line(result)
                assert name in line and str(snapshot) in line, line
                assert "CURRENT" in line, f"no way out offered: {line}"
            (index / "CURRENT").unlink()
            server.reset(server.config)
            rebuilt = index_json(server, corpus, "--index", index, cwd=tmp_path)
            assert rebuilt["published"] and rebuilt["chunks_embedded"] == 0, (name, rebuilt)
            assert server.log.of("embeddings") == [], "the rebuild paid again for cached vectors"
            assert search_ids(server, index, "quartz", "lexical", cwd=tmp_path)
        directory = IndexDirectory(index)
        assert [p.name for p in directory.snapshots_dir.iterdir()] == [directory.current_id()]

        # A truncated cache: indexing stops with one line naming the file; searching still works.
        os.truncate(cache, cache.stat().st_size // 2)
        result = iorag(server, "index", corpus, "--index", index, cwd=tmp_path)
        assert result.returncode == 1
        line = one_error_line(result)
        assert str(cache) in line and "delete the file" in line, line
        assert search_ids(server, index, "quartz", "hybrid", cwd=tmp_path)
        cache.unlink()  # what the message says to do
        # The index holds every vector already: an unchanged corpus costs nothing.
        server.reset(server.config)
        again = index_json(server, corpus, "--index", index, cwd=tmp_path)
        assert not again["published"] and server.log.of("embeddings") == []
