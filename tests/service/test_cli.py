"""The iorag command, run as a user runs it: a subprocess, offline, on the real local model."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from indexer.store import IndexDirectory

from ..conftest import ROOT, write_corpus

CORPORA = ROOT / "corpora"


def iorag(*args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("IORAG_", "IOINTELLIGENCE_"))}
    clean.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "service", *args],
        cwd=cwd,
        env=clean,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def indexed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A working directory whose ./.iorag holds the sample corpus."""
    work = tmp_path_factory.mktemp("cli")
    result = iorag("index", str(CORPORA), cwd=work)
    assert result.returncode == 0, result.stderr
    assert "documents" in result.stdout
    return work


def test_ask_answers_with_sources(indexed: Path) -> None:
    result = iorag("ask", "What happens when the quota runs out while indexing?", "--json", cwd=indexed)
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["model"] == "extractive"
    assert answer["sources"] and answer["sources"][0]["doc_id"]
    assert "[1]" in answer["answer"] or "[" in answer["answer"]
    assert "exit status 3" in answer["answer"].lower()
    assert set(answer["context"]) == {"chunks", "tokens", "dropped"}


def test_search_prints_ranked_chunks(indexed: Path) -> None:
    result = iorag("search", "reciprocal rank fusion", "--json", "-k", "3", cwd=indexed)
    assert result.returncode == 0, result.stderr
    results = json.loads(result.stdout)["results"]
    assert len(results) == 3
    assert "fusion" in results[0]["text"].lower()
    plain = iorag("search", "reciprocal rank fusion", cwd=indexed)
    assert plain.returncode == 0 and " 1. [" in plain.stdout


def test_reindexing_unchanged_corpus_embeds_nothing(indexed: Path) -> None:
    result = iorag("index", str(CORPORA), "--json", cwd=indexed)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["chunks_embedded"] == 0 and report["requests_planned"] == 0 and not report["published"]


def test_dry_run_reports_without_writing(tmp_path: Path) -> None:
    result = iorag("index", str(CORPORA), "--dry-run", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["dry_run"] and report["chunks_to_embed"] > 0 and report["requests_planned"] > 0
    assert not (tmp_path / ".iorag").exists()


def test_models_lists_context_lengths() -> None:
    result = iorag("models", "--json", cwd=ROOT)
    assert result.returncode == 0, result.stderr
    models = {m["id"]: m for m in json.loads(result.stdout)["models"]}
    assert models["nvidia/AceMath-7B-Instruct"]["context_length"] == 4000
    assert models["meta-llama/Llama-4-Maverick-17B-128E-Instruct-FP8"]["context_length"] == 430000
    assert models["BAAI/bge-multilingual-gemma2"]["embedding_limit"] == 4096
    assert models["mixedbread-ai/mxbai-embed-large-v1"]["embedding_limit"] == 512


@pytest.mark.parametrize(
    ("args", "code", "words"),
    [
        (("ask", "anything"), 1, "iorag index"),
        (("index", "does-not-exist/"), 1, "does-not-exist"),
        (("index",), 2, "PATHS"),
        (("search", "x", "-k", "0"), 2, "-k"),
        (("ask", "x", "--model", "no/such-model"), 1, "unknown model"),
        (("ask", "x", "--model", "meta-llama/Llama-3.3-70B-Instruct"), 1, "IOINTELLIGENCE_API_KEY"),
    ],
)
def test_expected_failures_are_one_line_without_traceback(tmp_path: Path, args: tuple[str, ...], code: int, words: str) -> None:
    result = iorag(*args, cwd=tmp_path)
    assert result.returncode == code, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    assert words in result.stderr


def test_bad_files_are_named_and_the_rest_is_indexed(tmp_path: Path) -> None:
    corpus = write_corpus(tmp_path / "c", {"good.md": "# Good\n\nThis one is fine.", "empty.txt": "  \n"})
    (corpus / "bad.txt").write_bytes(b"\xff\xfe broken \xff utf-8")
    result = iorag("index", str(corpus), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "bad.txt" in result.stderr and "empty.txt" in result.stderr
    assert "1 documents" in result.stdout


def test_eval_scores_a_beir_folder(tmp_path: Path) -> None:
    data = tmp_path / "tiny"
    (data / "qrels").mkdir(parents=True)
    topics = ["volcanoes erupt lava", "penguins swim in cold seas", "bread rises with yeast", "comets have icy tails"]
    with open(data / "corpus.jsonl", "w", encoding="utf-8") as corpus:
        for i, topic in enumerate(topics):
            corpus.write(json.dumps({"_id": f"d{i}", "title": topic.title(), "text": f"A note: {topic}."}) + "\n")
    with open(data / "queries.jsonl", "w", encoding="utf-8") as queries:
        for i, topic in enumerate(topics):
            queries.write(json.dumps({"_id": f"q{i}", "text": f"why do {topic.split()[0]}?"}) + "\n")
    (data / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join(f"q{i}\td{i}\t1\n" for i in range(len(topics)))
    )
    result = iorag("eval", str(data), "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["queries"] == 4 and set(summary["modes"]) == {"hybrid", "dense", "lexical"}
    assert summary["modes"]["lexical"]["ndcg@10"] == 1.0
    for metrics in summary["modes"].values():
        assert 0.0 <= metrics["ndcg@10"] <= 1.0 and metrics["recall@100"] == 1.0


def test_eval_scores_answers_where_the_folder_has_them(tmp_path: Path) -> None:
    data = tmp_path / "qa"
    (data / "qrels").mkdir(parents=True)
    facts = {
        "d0": ("Volcanoes", "Lava leaves a volcano at about 1,100 degrees. Ash clouds can reach the stratosphere."),
        "d1": ("Penguins", "Emperor penguins dive to 500 metres. They breed during the Antarctic winter."),
        "d2": ("Bread", "Yeast makes bread rise by releasing carbon dioxide. Salt slows the yeast down."),
    }
    questions = {
        "q0": ("How hot is lava when it leaves a volcano?", "d0", ["1,100 degrees"]),
        "q1": ("How deep do emperor penguins dive?", "d1", ["500 metres", "500"]),
        "q2": ("What gas makes bread rise?", "d2", ["Carbon dioxide"]),
    }
    with open(data / "corpus.jsonl", "w", encoding="utf-8") as corpus:
        for doc_id, (title, text) in facts.items():
            corpus.write(json.dumps({"_id": doc_id, "title": title, "text": text}) + "\n")
    with open(data / "queries.jsonl", "w", encoding="utf-8") as queries, open(data / "answers.jsonl", "w") as answers:
        for query_id, (text, _, spans) in questions.items():
            queries.write(json.dumps({"_id": query_id, "text": text}) + "\n")
            answers.write(json.dumps({"_id": query_id, "answers": spans}) + "\n")
    (data / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{d}\t1\n" for q, (_, d, _) in questions.items())
    )
    result = iorag("eval", str(data), "--mode", "hybrid", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    answers_metrics = json.loads(result.stdout)["answers"]
    assert set(answers_metrics) == {"questions", "contains", "first_sentence", "top_source", "chars_p50", "chars_p90"}
    assert answers_metrics["questions"] == 3
    assert answers_metrics["contains"] == answers_metrics["first_sentence"] == answers_metrics["top_source"] == 1.0
    assert 0 < answers_metrics["chars_p50"] <= answers_metrics["chars_p90"] <= 600
    text = iorag("eval", str(data), "--mode", "lexical", "--answers", "2", cwd=tmp_path)
    assert text.returncode == 0, text.stderr
    assert "answers (extractive, 2 questions): contains 100.0%, first sentence 100.0%" in text.stdout


def _cached_rows(index_dir: Path) -> int:
    """Embeddings committed so far (0 before the cache exists)."""
    import sqlite3

    path = index_dir / "cache.sqlite"
    if not path.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5) as db:
            return int(db.execute("SELECT COUNT(*) FROM embeddings").fetchone()[0])
    except sqlite3.OperationalError:
        return 0  # the table is being created


def test_kill_9_during_indexing_leaves_a_readable_index_and_a_rerun_completes(tmp_path: Path) -> None:
    docs = {f"d{i:03d}.md": f"# Note {i}\n\n" + f"Sentence {i} about subject {i % 17}. " * 20 for i in range(120)}
    corpus = write_corpus(tmp_path / "corpus", docs)
    index_dir = tmp_path / ".iorag"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("IORAG_", "IOINTELLIGENCE_"))}
    rng = random.Random(7)
    for _ in range(3):
        process = subprocess.Popen(
            [sys.executable, "-m", "service", "index", str(corpus)],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        # Kill after the run has committed something new, at a random moment after that.
        before = _cached_rows(index_dir)
        deadline = time.monotonic() + 90
        while process.poll() is None and _cached_rows(index_dir) <= before and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(rng.uniform(0, 0.5))
        process.send_signal(signal.SIGKILL)
        process.wait()
        directory = IndexDirectory(index_dir)
        if directory.exists():
            with directory.open_current() as snap:
                assert snap.manifest.chunks == len(snap.chunks())
    saved = _cached_rows(index_dir)
    assert saved > 0, "no batch was committed before the kills"
    result = iorag("index", str(corpus), "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["documents"] == 120
    assert report["cached_chunks"] >= saved, "the killed runs' embeddings were lost"
    assert report["cached_chunks"] + report["chunks_embedded"] == report["chunks"]


def test_an_index_built_with_another_model_is_a_clear_error(indexed: Path) -> None:
    result = iorag("search", "quota", cwd=indexed, env={"IORAG_EMBEDDING_MODEL": "mixedbread-ai/mxbai-embed-large-v1"})
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "built with local/all-MiniLM-L6-v2" in result.stderr and "--embedding-model" in result.stderr
