"""iorag against the IIO AI Platform (issue 11's done-when), end to end.

`iorag` runs as a subprocess against `tests/fakeapi.py`'s IIO profile on
loopback: its models and tier, `{"error": {"code"}}` bodies, rate-limit
headers on every answer, `/v1/health`, `max_tokens`. The rate window is
scaled from a minute to one second (same logic, a test that takes seconds).
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest

from indexer.catalog import default_catalog
from indexer.tokens import counter_for

from ..conftest import ROOT
from ..fakeapi import IIO_MODELS, NOMIC, QWEN_7B, QWEN_72B, FakeModel, FakeServer, iio_config

KEY = "iio-dev-5c8e1f27d9a04b6e"
CORPORA = ROOT / "corpora"
QUESTION = "What happens when the quota runs out while indexing?"
NOMIC_LIMIT = 8_192
_WORDS = (
    "quota refresh pool credits hours tokens embedding model chunk index gateway request answer source "
    "budget context window retry backoff latency server client vector search rank fusion lexical dense"
).split()


def config(**changes: Any) -> Any:
    return iio_config(api_key=KEY, **changes)


def iorag(*args: str, cwd: Path, fake: FakeServer, **env_changes: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("IORAG_", "IOINTELLIGENCE_"))}
    env.update({
        "IOINTELLIGENCE_BASE_URL": fake.base_url, "IORAG_PROVIDER": "iio", "IOINTELLIGENCE_API_KEY": KEY,
        "IORAG_BACKOFF_BASE": "0.01",
    })
    env.update(env_changes)
    result = subprocess.run(
        [sys.executable, "-m", "service", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )
    assert KEY not in result.stdout + result.stderr
    return result


def write_corpus(folder: Path, count: int, long_docs: int = 0, seed: int = 3) -> Path:
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        sentences = rng.randint(1400, 1700) if i < long_docs else rng.randint(3, 30)
        text = " ".join(" ".join(rng.choice(_WORDS) for _ in range(12)).capitalize() + "." for _ in range(sentences))
        (folder / f"doc{i:03d}.md").write_text(f"# Document {i}\n\n{text}\n", encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def server() -> Iterator[FakeServer]:
    with FakeServer(config()) as running:
        yield running


def test_index_200_documents_at_10_requests_a_window_without_a_429(server: FakeServer, tmp_path: Path) -> None:
    server.reset(config(rate_limit=10, rate_window=1.0))  # 10 requests a "minute" of one second
    corpus = write_corpus(tmp_path / "docs", 200, long_docs=4)
    nomic = default_catalog().get(NOMIC)
    # The largest chunk the prefix leaves room for: the chunker must budget `search_document: `.
    largest = NOMIC_LIMIT - counter_for(nomic).count(nomic.document_overhead) - 1
    result = iorag(
        "index", str(corpus), "--embedding-model", NOMIC, "--chunk-tokens", str(largest), "--json",
        cwd=tmp_path, fake=server, IORAG_EMBED_BATCH_ITEMS="4",
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["documents"] == 200 and report["embedding_model"] == NOMIC
    records = server.log.of("embeddings")
    assert len(records) > 30  # enough requests to span several windows
    assert [r.status for r in server.log.records if r.status != 200] == []  # not one 429
    inputs = [(text, tokens) for r in records for text, tokens in zip(r.inputs, r.tokens)]
    assert len(inputs) == report["chunks"]
    assert all(text.startswith("search_document: ") for text, _ in inputs)
    assert max(tokens for _, tokens in inputs) <= NOMIC_LIMIT
    assert max(tokens for _, tokens in inputs) > NOMIC_LIMIT - 100  # the long documents filled chunks up
    assert "waiting" in result.stderr and "rate-limit window" in result.stderr

    server.reset(config(rate_limit=10, rate_window=1.0))
    found = iorag("search", QUESTION, "--json", cwd=tmp_path, fake=server)
    assert found.returncode == 0, found.stderr
    assert [r.inputs for r in server.log.of("embeddings")] == [(f"search_query: {QUESTION}",)]


def test_a_monthly_limit_mid_run_exits_3_and_the_rerun_after_the_reset_completes_once(
    server: FakeServer, tmp_path: Path
) -> None:
    server.reset(config(rate_limit=None, monthly_limit=12, month_reset=3_600))
    corpus = write_corpus(tmp_path / "docs", 80)
    args = ("index", str(corpus), "--embedding-model", NOMIC, "--json")
    first = iorag(*args, cwd=tmp_path, fake=server, IORAG_EMBED_BATCH_ITEMS="4")
    assert first.returncode == 3, first.stderr
    lines = [line for line in first.stderr.splitlines() if line.startswith("iorag: error:")]
    assert len(lines) == 1 and "monthly request limit" in lines[0] and "rerun" in lines[0]
    assert 403 in [r.status for r in server.log.records]

    server.refresh_month()
    second = iorag(*args, cwd=tmp_path, fake=server, IORAG_EMBED_BATCH_ITEMS="4")
    assert second.returncode == 0, second.stderr
    report = json.loads(second.stdout)
    counts = server.log.embedded_counts()
    assert len(counts) == report["chunks"] and set(counts.values()) == {1}  # every chunk embedded exactly once


@pytest.fixture(scope="module")
def indexed(server: FakeServer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    models = {m.id: m for m in IIO_MODELS}
    models[QWEN_7B] = FakeModel(QWEN_7B, "chat", 2_048, 512)  # a small context the prompt must fit
    models["mistral:7b"] = FakeModel("mistral:7b", "chat", 8_192, advertise="null")
    server.reset(config(rate_limit=None, models=models, tier_models=frozenset({NOMIC, QWEN_7B, "mistral:7b"})))
    work = tmp_path_factory.mktemp("iio")
    result = iorag("index", str(CORPORA), "--json", cwd=work, fake=server)  # the provider's default model
    assert result.returncode == 0, result.stderr
    assert {r.model for r in server.log.of("embeddings")} == {NOMIC}
    return work


def test_ask_sends_max_tokens_within_the_context_and_the_tenant(server: FakeServer, indexed: Path) -> None:
    server.log.clear()
    server.api.tenants.clear()
    result = iorag(
        "ask", QUESTION, "--model", QWEN_7B, "--context-length", "2048", "-k", "50", "--json",
        cwd=indexed, fake=server, IOINTELLIGENCE_TENANT="team-a",
    )
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["model"] == QWEN_7B and answer["context"]["budget"] < 2_048
    assert answer["context"]["dropped"] > 0  # 50 chunks do not fit 2,048 tokens: the lowest went
    chat = server.log.of("chat")
    assert len(chat) == 1 and chat[0].ok  # the fake refuses over 2,048 tokens with a 400: none came
    assert "max_tokens" in chat[0].body_keys and "max_completion_tokens" not in chat[0].body_keys
    assert set(server.api.tenants) == {"team-a"}


def test_a_model_off_the_tier_is_one_line_naming_it_and_iorag_models(server: FakeServer, indexed: Path) -> None:
    result = iorag("ask", QUESTION, "--model", QWEN_72B, cwd=indexed, fake=server)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "qwen2.5:72b" in lines[0] and "`iorag models`" in lines[0], result.stderr
    assert "Traceback" not in result.stderr


def test_a_model_without_a_known_limit_needs_it_stated(server: FakeServer, indexed: Path) -> None:
    refused = iorag("ask", QUESTION, "--model", "mistral:7b", cwd=indexed, fake=server)
    assert refused.returncode == 1 and "--context-length" in refused.stderr, refused.stderr
    server.log.clear()
    stated = iorag("ask", QUESTION, "--model", "mistral:7b", "--context-length", "8192", "--json", cwd=indexed, fake=server)
    assert stated.returncode == 0, stated.stderr
    assert json.loads(stated.stdout)["model"] == "mistral:7b" and server.log.of("chat")[0].ok
