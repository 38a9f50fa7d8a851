"""Remote and offline paths end to end, against the fake IO Intelligence API on loopback.

The `iorag` command runs as a subprocess and the HTTP app under real uvicorn,
both pointed at `tests/fakeapi.py` (127.0.0.1). With IOINTELLIGENCE_API_KEY
set, every path must use the remote models (the request log shows what
arrived); without it, the offline default, with nothing sent anywhere. The
key must never show up in output, responses or log lines, even when the fake
echoes a wrong key back in its 401 message.
"""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

from indexer.catalog import DEFAULT_REMOTE_CHAT_MODEL, LOCAL_EMBEDDING_MODEL
from service.api import create_app
from service.config import Settings

from ..conftest import ROOT
from ..fakeapi import DEFAULT_MODELS, GEMMA, MXBAI, FakeConfig, FakeModel, FakeServer, RequestRecord, answer_text
from ..logcapture import captured_log_lines
from ..serving import serve

KEY = "sk-iorag-remote-test-5c8e1f27d9"
WRONG_KEY = "sk-iorag-wrong-key-0a9b8c7d6e"
LLAMA = DEFAULT_REMOTE_CHAT_MODEL
R1 = "deepseek-ai/DeepSeek-R1-0528"
ACEMATH = "nvidia/AceMath-7B-Instruct"
PREMIUM = "acme/Premium-405B"  # only /models knows it; the fake answers 402 for it
CORPORA = ROOT / "corpora"
QUESTION = "What happens when the quota runs out while indexing?"
SECRETS = (KEY, WRONG_KEY)


def fake_config(**changes: Any) -> FakeConfig:
    """The fake's defaults with our key and AceMath (4,000-token context) served too."""
    models = {m.id: m for m in DEFAULT_MODELS}
    models[ACEMATH] = FakeModel(ACEMATH, "chat", 4_000, advertise="top")
    return FakeConfig(api_key=KEY, models=models, **changes)


def assert_no_secret(*texts: str) -> None:
    for text in texts:
        for secret in SECRETS:
            assert secret not in text, f"an API key leaked: {text[:300]!r}"


_PROXIES = ("http_proxy", "https_proxy", "all_proxy")


def iorag(
    *args: str, cwd: Path, base_url: str, key: str | None = KEY, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run `iorag` as a user does; the base URL always points at the fake, key or not."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("IORAG_", "IOINTELLIGENCE_")) and k.lower() not in _PROXIES
    }
    env.update({"IOINTELLIGENCE_BASE_URL": base_url, "IORAG_BACKOFF_BASE": "0.01"})
    if key is not None:
        env["IOINTELLIGENCE_API_KEY"] = key
    result = subprocess.run(
        [sys.executable, "-m", "service", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert_no_secret(result.stdout, result.stderr)
    return result


def ok_json(result: subprocess.CompletedProcess[str]) -> Any:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def chat_records(fake: FakeServer) -> list[RequestRecord]:
    return fake.log.of("chat")


def citing(count: int) -> str:
    """The fake's answer to a prompt holding `count` sources: it cites each of them, and nothing else.

    The system message's example citations ("[1] or [2][3]") are not sources:
    with fewer than three sources the answer must not cite [3].
    """
    return answer_text(list(range(1, count + 1)))


# --- fixtures --------------------------------------------------------------------


@pytest.fixture(scope="module")
def log_lines() -> Iterator[list[str]]:
    """Every log line emitted in this process (the HTTP app runs here) while the module runs."""
    with captured_log_lines() as lines:
        yield lines


@pytest.fixture(scope="module")
def server(log_lines: list[str]) -> Iterator[FakeServer]:
    with FakeServer(fake_config()) as running:
        yield running


@pytest.fixture
def fake(server: FakeServer) -> FakeServer:
    server.reset(fake_config())
    return server


@dataclass(frozen=True)
class Indexed:
    work: Path
    report: dict[str, Any]
    #: What the fake saw while indexing.
    records: list[RequestRecord]


@pytest.fixture(scope="module")
def remote_index(server: FakeServer, tmp_path_factory: pytest.TempPathFactory) -> Indexed:
    """./.iorag of the sample corpus, embedded through the fake with the default remote model."""
    server.reset(fake_config())
    work = tmp_path_factory.mktemp("remote")
    report = ok_json(iorag("index", str(CORPORA), "--json", cwd=work, base_url=server.base_url))
    return Indexed(work, report, server.log.records)


@pytest.fixture(scope="module")
def offline_index(server: FakeServer, tmp_path_factory: pytest.TempPathFactory) -> Indexed:
    """./.iorag of the sample corpus indexed without a key: the local model, nothing sent."""
    server.reset(fake_config())
    work = tmp_path_factory.mktemp("offline")
    report = ok_json(iorag("index", str(CORPORA), "--json", cwd=work, base_url=server.base_url, key=None))
    return Indexed(work, report, server.log.records)


_WORDS = (
    "quota refresh pool credits hours tokens embedding model chunk index gateway request answer source "
    "budget context window retry backoff latency server client vector search rank fusion lexical dense "
    "document title heading sentence boundary prompt completion stream usage limit tier account"
).split()


def _prose(rng: random.Random, sentences: int) -> str:
    out = []
    for _ in range(sentences):
        words = [rng.choice(_WORDS) for _ in range(rng.randint(8, 16))]
        out.append(" ".join(words).capitalize() + ".")
    return " ".join(out)


@pytest.fixture(scope="module")
def budget_index(server: FakeServer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """60 documents of ~300 tokens each, embedded through the fake with mxbai-embed-large-v1."""
    server.reset(fake_config())
    work = tmp_path_factory.mktemp("budget")
    corpus = work / "notes"
    corpus.mkdir()
    rng = random.Random(7)
    for i in range(60):
        (corpus / f"note{i:02d}.md").write_text(f"# Note {i}\n\n{_prose(rng, 24)}\n", encoding="utf-8")
    report = ok_json(
        iorag("index", str(corpus), "--embedding-model", MXBAI, "--json", cwd=work, base_url=server.base_url)
    )
    assert report["documents"] == 60 and report["chunks"] >= 60
    assert {r.model for r in server.log.of("embeddings")} == {MXBAI}
    return work


# --- CLI, remote ------------------------------------------------------------------


def test_cli_index_embeds_through_the_fake_with_the_default_remote_model(remote_index: Indexed) -> None:
    report = remote_index.report
    assert report["embedding_model"] == GEMMA
    assert report["chunks"] > 0 and report["chunks_embedded"] == report["chunks"]
    records = remote_index.records
    assert records and {r.endpoint for r in records} == {"embeddings"}
    assert all(r.ok and r.model == GEMMA and r.encoding_format == "base64" for r in records)
    assert all("truncate_prompt_tokens" not in r.body_keys for r in records)
    # Every input within the model's limit as the fake counts it, and each chunk sent once.
    assert max(t for r in records for t in r.tokens) <= 4_096
    assert sum(len(r.inputs) for r in records) == report["chunks"]


def test_cli_search_embeds_the_query_with_the_index_model(remote_index: Indexed, fake: FakeServer) -> None:
    result = iorag("search", "quota refresh", "-k", "3", "--json", cwd=remote_index.work, base_url=fake.base_url)
    results = ok_json(result)["results"]
    assert len(results) == 3 and all(r["doc_id"] for r in results)
    (query,) = fake.log.of("embeddings")
    assert query.model == GEMMA and len(query.inputs) == 1
    assert query.inputs[0].startswith("<instruct>") and query.inputs[0].endswith("<query>quota refresh")


def test_cli_ask_answers_with_the_default_remote_chat_model(remote_index: Indexed, fake: FakeServer) -> None:
    answer = ok_json(iorag("ask", QUESTION, "--json", cwd=remote_index.work, base_url=fake.base_url))
    assert answer["model"] == LLAMA
    (call,) = chat_records(fake)
    assert call.ok and call.model == LLAMA
    # The fake's deterministic answer cites every source in the prompt it was sent.
    sources = answer["sources"]
    assert answer["answer"] == citing(len(sources))
    assert answer["cited"] == list(range(1, len(sources) + 1))
    assert answer["usage"]["prompt_tokens"] == call.tokens[0] and answer["usage"]["completion_tokens"] > 0
    assert answer["context"]["chunks"] == len(sources) and answer["context"]["tokens"] <= answer["context"]["budget"]
    plain = iorag("ask", QUESTION, cwd=remote_index.work, base_url=fake.base_url)
    assert plain.returncode == 0 and plain.stdout.startswith("Answer based on [1]")
    assert LLAMA in plain.stderr and "tokens of context" in plain.stderr


@pytest.mark.parametrize("shape", ["openai", "paged"])
def test_cli_models_merges_the_api_list(fake: FakeServer, tmp_path: Path, shape: str) -> None:
    fake.reset(fake_config(models_shape=shape, models_page_size=4, models_pagination="cursor"))
    models = {m["id"]: m for m in ok_json(iorag("models", "--json", cwd=tmp_path, base_url=fake.base_url))["models"]}
    assert len(fake.log.of("models")) == 3  # 10 records, 4 a page
    # Figures the API gave win and say so; where it gave none the catalog's stay.
    assert models[LLAMA]["context_length"] == 128_000 and models[LLAMA]["source"] == "api"
    assert models[ACEMATH]["context_length"] == 4_000 and models[ACEMATH]["source"] == "api"
    thinking = models["Qwen3-235B-A22B-Thinking-2507"]
    assert thinking["source"] == "catalog" and thinking["context_length"] == 262_144
    assert models["microsoft/phi-4"]["source"] == "catalog"
    assert models[PREMIUM]["listed"] == "api" and models[PREMIUM]["context_length"] == 131_072
    assert models[MXBAI]["source"] == "api" and models[MXBAI]["embedding_limit"] == 512
    if shape == "paged":
        assert models[LLAMA]["max_output_tokens"] == 8_192
        assert models[R1]["max_output_tokens"] == 32_768  # under `metadata`
        assert models["acme/vectorizer-v2"]["kind"] == "embedding" and models["acme/vectorizer-v2"]["dims"] == 768


def test_cli_wrong_key_fails_in_one_line_without_showing_the_key(remote_index: Indexed, fake: FakeServer) -> None:
    result = iorag("search", "quota", cwd=remote_index.work, base_url=fake.base_url, key=WRONG_KEY)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "401" in result.stderr and "IOINTELLIGENCE_API_KEY" in result.stderr
    assert [r.status for r in fake.log.records] == [401]


# --- the budget acceptance ----------------------------------------------------------


@pytest.mark.parametrize("server_ratio", [None, 1.4], ids=["server-counts-less", "server-counts-more"])
def test_ask_fills_a_small_context_without_ever_overflowing_it(
    budget_index: Path, fake: FakeServer, server_ratio: float | None
) -> None:
    """AceMath (4,000 tokens), 50 retrieved chunks of ~300 tokens: far more than fits.

    The fake answers 400 to any prompt over context - completion as it counts
    it. When it counts like the client or less, no 400 may happen; when it
    counts 1.4x more, the one shrink-and-retry must recover.
    """
    if server_ratio is not None:
        fake.reset(fake_config(chat_token_ratio={ACEMATH: server_ratio}))
    result = iorag("ask", QUESTION, "--model", ACEMATH, "-k", "50", "--json", cwd=budget_index, base_url=fake.base_url)
    answer = ok_json(result)
    context = answer["context"]
    completion = 1_000  # the default: min(1,024, a quarter of the context)
    full_budget = 4_000 - completion - 32  # less the template margin
    # A retry after the server's 400 packs for a smaller budget.
    assert context["budget"] == full_budget if server_ratio is None else context["budget"] < full_budget
    assert context["dropped"] > 0 and context["chunks"] + context["dropped"] == 50
    assert context["tokens"] <= context["budget"]
    assert context["tokens"] >= 0.9 * context["budget"], context
    calls = chat_records(fake)
    answered = [r for r in calls if r.ok]
    assert len(answered) == 1 and answered[0].model == ACEMATH
    assert answered[0].tokens[0] <= 4_000 - completion
    assert answer["usage"]["prompt_tokens"] == answered[0].tokens[0]
    if server_ratio is None:
        assert [r.status for r in calls] == [200]
    else:
        assert [r.status for r in calls] == [400, 200]
        assert calls[0].tokens[0] > 4_000 - completion


# --- HTTP, remote -----------------------------------------------------------------


def remote_settings(index: Indexed, base_url: str, key: str = KEY) -> Settings:
    return Settings(
        api_key=key, base_url=base_url, index_dir=index.work / ".iorag", reload_interval=0, backoff_base=0.01
    )


@pytest.fixture(scope="module")
def remote_http(server: FakeServer, remote_index: Indexed) -> Iterator[str]:
    with serve(create_app(remote_settings(remote_index, server.base_url))) as url:
        yield url


@pytest.fixture
def http(remote_http: str, fake: FakeServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=remote_http, timeout=30) as client:
        yield client


def sse_data(response: httpx.Response) -> list[Any]:
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
    events = [line[6:] for line in response.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    return [json.loads(e) for e in events[:-1]]


def test_http_health_reports_remote_mode(http: httpx.Client) -> None:
    body = http.get("/v1/health").json()
    assert body["mode"] == "remote" and body["chat_model"] == LLAMA and body["embedding_model"] == GEMMA


def test_http_ask_answers_with_the_remote_model(http: httpx.Client, fake: FakeServer) -> None:
    response = http.post("/v1/ask", json={"question": QUESTION, "top_k": 2})
    assert response.status_code == 200, response.text
    assert_no_secret(response.text)
    body = response.json()
    assert body["model"] == LLAMA and len(body["sources"]) == 2
    assert body["answer"] == citing(2) and body["cited"] == [1, 2]
    (call,) = chat_records(fake)
    assert body["usage"]["prompt_tokens"] == call.tokens[0]
    assert set(body["context"]) == {"chunks", "tokens", "dropped", "budget"}


def test_http_ask_streams_the_fakes_deltas_without_reasoning(http: httpx.Client, fake: FakeServer) -> None:
    request = {"question": QUESTION, "top_k": 5, "model": R1, "stream": True}
    with http.stream("POST", "/v1/ask", json=request) as response:
        events = sse_data(response)
    final = events[-1]
    deltas = [e["delta"] for e in events[:-1]]
    assert final["model"] == R1 and len(final["sources"]) == 5 and final["answer"] == citing(5)
    # The fake streams one word per chunk, after its reasoning deltas.
    assert deltas == re.findall(r"\S+\s*", final["answer"])
    assert all("prompt cites" not in text for text in [*deltas, final["answer"]])
    (call,) = chat_records(fake)
    assert call.ok and call.model == R1 and "stream" in call.body_keys
    assert final["usage"]["prompt_tokens"] == call.tokens[0] and final["usage"]["completion_tokens"] > 0


def test_http_streamed_answer_shrinks_once_when_the_server_counts_more(http: httpx.Client, fake: FakeServer) -> None:
    # 24 chunks of the sample corpus overflow AceMath's 4,000 tokens; the fake counts 1.4x the client.
    fake.reset(fake_config(chat_token_ratio={ACEMATH: 1.4}))
    request = {"question": QUESTION, "top_k": 50, "model": ACEMATH, "stream": True}
    with http.stream("POST", "/v1/ask", json=request) as response:
        events = sse_data(response)
    final = events[-1]
    assert final["model"] == ACEMATH and final["answer"].startswith("Answer based on [1]")
    assert "".join(e["delta"] for e in events[:-1]) == final["answer"]
    assert final["context"]["dropped"] > 0
    calls = chat_records(fake)
    assert [c.status for c in calls] == [400, 200], "the refused prompt was sent again unchanged"
    assert calls[1].tokens[0] <= 4_000 - 1_000 < calls[0].tokens[0]


def test_http_chat_completions_plain_and_streamed(http: httpx.Client, fake: FakeServer) -> None:
    request = {"model": R1, "messages": [{"role": "user", "content": QUESTION}], "top_k": 1}
    body = http.post("/v1/chat/completions", json=request).json()
    assert body["object"] == "chat.completion" and body["model"] == R1
    assert len(body["sources"]) == 1 and body["choices"][0]["message"]["content"] == citing(1)
    assert body["usage"]["total_tokens"] == body["usage"]["prompt_tokens"] + body["usage"]["completion_tokens"]
    with http.stream("POST", "/v1/chat/completions", json={**request, "stream": True}) as response:
        chunks = sse_data(response)
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert text == citing(1) and len(chunks[-1]["sources"]) == 1
    assert all(c["object"] == "chat.completion.chunk" and c["model"] == R1 for c in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    calls = chat_records(fake)
    assert [c.model for c in calls] == [R1, R1] and all(c.ok for c in calls)
    assert chunks[-1]["usage"]["prompt_tokens"] == calls[1].tokens[0]


def test_http_models_come_from_the_fake(http: httpx.Client, fake: FakeServer) -> None:
    models = {m["id"]: m for m in http.get("/v1/models").json()["data"]}
    assert len(fake.log.of("models")) == 1
    assert models[PREMIUM]["listed"] == "api" and models[ACEMATH]["source"] == "api"


def test_http_a_model_only_the_api_lists_is_used_and_402_passes_through(http: httpx.Client, fake: FakeServer) -> None:
    response = http.post("/v1/ask", json={"question": QUESTION, "model": PREMIUM})
    assert response.status_code == 402, response.text
    error = response.json()["error"]
    assert error["type"] == "PaymentRequiredError" and PREMIUM in error["message"]
    assert [r.status for r in chat_records(fake)] == [402]


def test_http_exhausted_quota_is_429_with_the_refresh_time(http: httpx.Client, fake: FakeServer) -> None:
    fake.reset(fake_config(quota={LLAMA: 10}, quota_reset=7_200))
    for stream in (False, True):
        response = http.post("/v1/ask", json={"question": QUESTION, "stream": stream})
        assert response.status_code == 429, response.text
        assert response.json()["error"]["type"] == "QuotaExhaustedError"
        assert 7_000 <= int(response.headers["retry-after"]) <= 7_201
    # Retrieval does not spend the chat quota.
    assert http.post("/v1/search", json={"query": "quota"}).status_code == 200


def test_http_wrong_key_is_a_502_naming_the_setting(fake: FakeServer, remote_index: Indexed) -> None:
    with serve(create_app(remote_settings(remote_index, fake.base_url, key=WRONG_KEY))) as url:
        with httpx.Client(base_url=url, timeout=30) as client:
            for path, body in (("/v1/ask", {"question": QUESTION}), ("/v1/search", {"query": "quota"})):
                response = client.post(path, json=body)
                assert response.status_code == 502, response.text
                assert_no_secret(response.text)
                error = response.json()["error"]
                assert error["type"] == "AuthenticationError" and "IOINTELLIGENCE_API_KEY" in error["hint"]
    assert {r.status for r in fake.log.records} == {401}


def test_settings_build_the_one_client_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IOINTELLIGENCE_API_KEY", KEY)
    monkeypatch.setenv("IORAG_QUOTA_WAIT", "90")
    monkeypatch.setenv("IORAG_BACKOFF_BASE", "0.25")
    monkeypatch.setenv("IORAG_EMBED_BATCH_ITEMS", "16")
    config = Settings().client_config()
    assert (config.quota_wait, config.backoff_base, config.batch_items) == (90.0, 0.25, 16)
    assert config.api_key == KEY and config.profile.name == "ionet"
    assert Settings().remote_options() == config  # the former name gives the same, single object
    client = config.make_client()
    assert client.config is config
    assert_no_secret(repr(config), repr(Settings()), repr(client))


def test_http_waits_out_a_quota_refresh_within_quota_wait(fake: FakeServer, remote_index: Indexed) -> None:
    fake.reset(fake_config(quota={LLAMA: 100_000}, quota_reset=1.0))
    fake.api.used[LLAMA] = 100_000  # spent: the next chat call is refused until the refresh
    settings = remote_settings(remote_index, fake.base_url).model_copy(update={"quota_wait": 10.0})
    with serve(create_app(settings)) as url, httpx.Client(base_url=url, timeout=30) as client:
        response = client.post("/v1/ask", json={"question": QUESTION, "top_k": 3})
    assert response.status_code == 200, response.text
    assert response.json()["answer"] == citing(3)
    assert [r.status for r in chat_records(fake)] == [429, 200]


# --- the key switches the default, both ways -----------------------------------------


def test_cli_the_key_switches_the_defaults_and_unsetting_it_switches_back(
    offline_index: Indexed, fake: FakeServer, tmp_path: Path
) -> None:
    assert offline_index.report["embedding_model"] == LOCAL_EMBEDDING_MODEL
    assert offline_index.records == [], "indexing without a key sent requests"
    # The chat default: the index's local model embeds the query either way.
    models = [
        ok_json(iorag("ask", QUESTION, "--json", cwd=offline_index.work, base_url=fake.base_url, key=key))["model"]
        for key in (KEY, None)
    ]
    assert models == [LLAMA, "extractive"]
    assert [r.model for r in fake.log.records] == [LLAMA]
    # The embedding default of a new index: offline, set the key, unset it again.
    planned = [
        ok_json(iorag("index", str(CORPORA), "--dry-run", "--json", cwd=tmp_path, base_url=fake.base_url, key=key))
        for key in (None, KEY, None)
    ]
    assert [p["embedding_model"] for p in planned] == [LOCAL_EMBEDDING_MODEL, GEMMA, LOCAL_EMBEDDING_MODEL]
    assert planned[1]["requests_planned"] >= 1 and len(fake.log.records) == 1, "a dry run sent requests"


def test_http_the_key_switches_the_defaults(offline_index: Indexed, fake: FakeServer) -> None:
    index_dir = offline_index.work / ".iorag"
    seen = []
    for settings in (
        Settings(index_dir=index_dir, base_url=fake.base_url, reload_interval=0),
        Settings(index_dir=index_dir, base_url=fake.base_url, api_key=KEY, reload_interval=0),
    ):
        with serve(create_app(settings)) as url, httpx.Client(base_url=url, timeout=30) as client:
            health = client.get("/v1/health").json()
            answer = client.post("/v1/ask", json={"question": QUESTION, "top_k": 2}).json()
            seen.append((health["mode"], health["chat_model"], answer["model"]))
    assert seen == [("offline", "extractive", "extractive"), ("remote", LLAMA, LLAMA)]
    assert [r.model for r in fake.log.records] == [LLAMA]


def test_no_log_line_holds_a_key(log_lines: list[str], server: FakeServer) -> None:
    # Runs last in this module: everything the HTTP app, the client and uvicorn logged so far.
    assert log_lines, "the log capture saw nothing"
    assert_no_secret(*log_lines)


# --- first-hour fixes, remote ---------------------------------------------------------


def test_cli_lexical_search_needs_no_key_on_a_remote_index(remote_index: Indexed, fake: FakeServer) -> None:
    result = iorag("search", "quota refresh", "--mode", "lexical", "--json", cwd=remote_index.work,
                   base_url=fake.base_url, key=None)
    assert ok_json(result)["results"], result.stderr
    assert fake.log.records == []  # nothing was embedded, nothing sent
    # Dense search does need the model, and says so in one line.
    dense = iorag("search", "quota refresh", "--mode", "dense", cwd=remote_index.work, base_url=fake.base_url, key=None)
    assert dense.returncode == 1 and "Traceback" not in dense.stderr
    assert "IOINTELLIGENCE_API_KEY" in dense.stderr and len(dense.stderr.strip().splitlines()) == 1


def test_cli_citations_are_renumbered_without_gaps(remote_index: Indexed, fake: FakeServer) -> None:
    fake.reset(fake_config(cite=[3, 5, 3]))  # a model that skips sources: "[3], [5] and [3]"
    answer = ok_json(iorag("ask", QUESTION, "-k", "5", "--json", cwd=remote_index.work, base_url=fake.base_url))
    assert answer["answer"] == "Answer based on [1], [2] and [1]."
    retrieved = answer["retrieved"]
    assert len(retrieved) == 5 and answer["context"]["chunks"] == 5
    assert [s["chunk_id"] for s in answer["sources"]] == [retrieved[2]["chunk_id"], retrieved[4]["chunk_id"]]
    assert answer["cited"] == [1, 2]
    plain = iorag("ask", QUESTION, "-k", "5", cwd=remote_index.work, base_url=fake.base_url)
    assert plain.returncode == 0, plain.stderr
    lines = plain.stdout.strip().splitlines()
    assert lines[0] == "Answer based on [1], [2] and [1]."
    listed = [line for line in lines if line.startswith("[")]
    assert [line.split("]")[0] + "]" for line in listed] == ["[1]", "[2]"]
    assert listed[0].startswith(f"[1] {retrieved[2]['doc_id']} ::")


def test_http_streamed_citations_are_renumbered_as_they_stream(http: httpx.Client, fake: FakeServer) -> None:
    fake.reset(fake_config(cite=[4, 2]))
    with http.stream("POST", "/v1/ask", json={"question": QUESTION, "top_k": 4, "stream": True}) as response:
        events = sse_data(response)
    final = events[-1]
    streamed = "".join(e["delta"] for e in events[:-1]).strip()
    assert streamed == final["answer"] == "Answer based on [1] and [2]."
    assert [s["chunk_id"] for s in final["sources"]] == [final["retrieved"][3]["chunk_id"], final["retrieved"][1]["chunk_id"]]
