"""The HTTP API over real uvicorn on loopback, offline, with the real local model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

import httpx
import pytest

from indexer.pipeline import Indexer
from service.api import create_app
from service.config import Settings

from ..conftest import ROOT
from ..serving import serve


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    index_dir = tmp_path_factory.mktemp("http") / "index"
    Indexer(index_dir).index([ROOT / "corpora"])
    with serve(create_app(Settings(index_dir=index_dir, reload_interval=0))) as url:
        yield url


@pytest.fixture
def client(base_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base_url, timeout=60) as http:
        yield http


def test_health_reports_the_index(client: httpx.Client) -> None:
    body = client.get("/v1/health").json()
    assert body["status"] == "ok" and body["documents"] >= 5 and body["chunks"] >= body["documents"]
    assert body["embedding_model"] == "local/all-MiniLM-L6-v2" and body["mode"] == "offline"


def test_ask_returns_the_contract_shape(client: httpx.Client) -> None:
    response = client.post("/v1/ask", json={"question": "How do I switch to another embedding model?", "top_k": 4})
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) >= {"answer", "model", "sources", "usage", "context"}
    assert body["model"] == "extractive" and len(body["retrieved"]) == 4
    # Sources are the cited chunks, numbered as cited; the retrieved context is kept beside them.
    assert body["sources"] and body["cited"] == list(range(1, len(body["sources"]) + 1))
    retrieved_ids = [hit["chunk_id"] for hit in body["retrieved"]]
    assert all(source["chunk_id"] in retrieved_ids for source in body["sources"])
    assert set(body["sources"][0]) >= {"chunk_id", "doc_id", "title", "text", "score"}
    assert set(body["usage"]) == {"prompt_tokens", "completion_tokens"}
    assert set(body["context"]) == {"chunks", "tokens", "dropped"}
    assert "--embedding-model" in body["answer"] or "embedding model" in body["answer"].lower()


def test_ask_streams_server_sent_events(client: httpx.Client) -> None:
    with client.stream("POST", "/v1/ask", json={"question": "What does 402 mean?", "stream": True}) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [line[6:] for line in response.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    final = json.loads(events[-2])
    assert final["sources"] and "answer" in final
    assert any("delta" in json.loads(e) for e in events[:-2])


def test_search_returns_ranked_hits(client: httpx.Client) -> None:
    body = client.post("/v1/search", json={"query": "BM25 stemmed words", "top_k": 3}).json()
    scores = [hit["score"] for hit in body["results"]]
    assert len(scores) == 3 and scores == sorted(scores, reverse=True)


def test_documents_can_be_added_found_and_deleted(client: httpx.Client) -> None:
    doc = {"id": "api/zebra", "title": "Zebras", "text": "Zebras have black and white stripes unique to each animal."}
    added = client.post("/v1/documents", json={"documents": [doc]})
    assert added.status_code == 200, added.text
    assert added.json()["added"] == 1 and added.json()["chunks_embedded"] >= 1
    for mode in ("lexical", "dense", "hybrid"):
        hits = client.post("/v1/search", json={"query": "zebra stripes", "top_k": 1, "mode": mode}).json()["results"]
        assert hits[0]["doc_id"] == "api/zebra", mode
    again = client.post("/v1/documents", json={"documents": [doc]}).json()
    assert again["unchanged"] == 1 and again["chunks_embedded"] == 0
    deleted = client.delete("/v1/documents/api/zebra")
    assert deleted.status_code == 200 and deleted.json()["deleted"] == "api/zebra"
    for mode in ("lexical", "dense", "hybrid"):
        hits = client.post("/v1/search", json={"query": "zebra stripes", "top_k": 3, "mode": mode}).json()["results"]
        assert all(hit["doc_id"] != "api/zebra" for hit in hits), mode
    missing = client.delete("/v1/documents/api/zebra")
    assert missing.status_code == 404 and missing.json()["error"]["type"] == "DocumentNotFoundError"


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        # Empty and blank questions are bad questions (400, our error shape), as the README promises.
        ("/v1/ask", {"question": ""}, 400),
        ("/v1/ask", {"question": "   "}, 400),
        ("/v1/ask", {"question": " \n\t ", "stream": True}, 400),
        ("/v1/search", {"query": ""}, 400),
        ("/v1/search", {"query": "  "}, 400),
        ("/v1/ask", {"question": "hi", "top_k": 0}, 422),
        ("/v1/ask", {"question": "hi", "model": "no/such-model"}, 400),
        ("/v1/ask", {"question": "hi", "model": "meta-llama/Llama-3.3-70B-Instruct"}, 400),
        ("/v1/search", {"top_k": 2}, 422),
        ("/v1/documents", {"documents": []}, 422),
        ("/v1/chat/completions", {"messages": [{"role": "system", "content": "x"}]}, 400),
    ],
)
def test_errors_are_json_with_status(client: httpx.Client, path: str, body: dict, status: int) -> None:
    response = client.post(path, json=body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["type"] and error["message"]


def test_openai_compatible_chat_completions(client: httpx.Client) -> None:
    request = {"messages": [{"role": "user", "content": "What is the default index directory?"}]}
    body = client.post("/v1/chat/completions", json=request).json()
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"]["role"] == "assistant" and body["choices"][0]["message"]["content"]
    assert body["sources"]
    with client.stream("POST", "/v1/chat/completions", json={**request, "stream": True}) as response:
        events = [line[6:] for line in response.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop" and "usage" in chunks[-1]


def test_models_lists_limits(client: httpx.Client) -> None:
    body = client.get("/v1/models").json()
    assert body["object"] == "list"
    models = {m["id"]: m for m in body["data"]}
    assert models["nvidia/AceMath-7B-Instruct"]["context_length"] == 4000
    assert models["extractive"]["object"] == "model" and models["extractive"]["kind"] == "chat"


def test_openapi_docs_are_served(client: httpx.Client) -> None:
    assert client.get("/docs").status_code == 200
    assert "/v1/ask" in client.get("/openapi.json").json()["paths"]


def test_empty_index_answers_404_and_health_says_empty(tmp_path: Path) -> None:
    with serve(create_app(Settings(index_dir=tmp_path / "none"))) as url:
        with httpx.Client(base_url=url) as http:
            assert http.get("/v1/health").json()["status"] == "empty"
            response = http.post("/v1/search", json={"query": "x"})
            assert response.status_code == 404 and "iorag index" in response.json()["error"]["hint"]


def test_server_picks_up_a_new_index_version_without_restart(tmp_path: Path) -> None:
    index_dir = tmp_path / "index"
    from indexer.models import Document

    Indexer(index_dir).add_documents([Document(id="one", text="The first document is about apples.")])
    with serve(create_app(Settings(index_dir=index_dir, reload_interval=0))) as url:
        with httpx.Client(base_url=url, timeout=60) as http:
            assert http.get("/v1/health").json()["documents"] == 1
            Indexer(index_dir).add_documents([Document(id="two", text="The second one is about pears.")])
            assert http.get("/v1/health").json()["documents"] == 2
            hits = http.post("/v1/search", json={"query": "pears", "top_k": 1, "mode": "lexical"}).json()["results"]
            assert hits[0]["doc_id"] == "two"
