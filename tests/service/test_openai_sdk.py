"""The official `openai` SDK against iorag on real uvicorn (loopback), offline."""

from __future__ import annotations

import base64
import math
from pathlib import Path
from typing import Iterator

import httpx
import numpy as np
import openai
import pytest

from indexer.local import LocalEmbedder
from indexer.pipeline import Indexer
from service.api import create_app
from service.config import Settings

from ..conftest import ROOT
from ..serving import serve

LOCAL = "local/all-MiniLM-L6-v2"


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    index_dir = tmp_path_factory.mktemp("openai") / "index"
    Indexer(index_dir).index([ROOT / "corpora"])
    with serve(create_app(Settings(index_dir=index_dir, reload_interval=0))) as url:
        yield url


@pytest.fixture
def client(base_url: str) -> Iterator[openai.OpenAI]:
    # Any key works while the server has none; the SDK insists on one. No retries: a failure shows at once.
    with openai.OpenAI(base_url=f"{base_url}/v1", api_key="unused", max_retries=0, timeout=60) as sdk:
        yield sdk


def test_models_list_names_extractive_and_the_chat_models(client: openai.OpenAI) -> None:
    models = {m.id: m for m in client.models.list()}
    assert models["extractive"].object == "model" and models["extractive"].owned_by == "iorag"
    llama = models["meta-llama/Llama-3.3-70B-Instruct"]
    assert llama.owned_by == "io-intelligence" and isinstance(llama.created, int)
    # iorag's figures ride along inside each item.
    assert llama.model_extra and llama.model_extra["context_length"] == 128_000
    assert llama.model_extra["kind"] == "chat"
    assert models[LOCAL].model_extra["embedding_limit"] == 256  # type: ignore[index]


def test_chat_completion_plain(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(
        model="extractive", messages=[{"role": "user", "content": "What is the default index directory?"}]
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "stop" and choice.message.role == "assistant"
    assert ".iorag" in (choice.message.content or "")
    assert completion.model == "extractive" and completion.usage is not None
    assert completion.model_extra and completion.model_extra["sources"]


def test_chat_completion_streams_incremental_deltas(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="extractive",
        messages=[{"role": "user", "content": "What happens when the quota runs out while indexing?"}],
        stream=True,
    )
    chunks = list(stream)
    pieces = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(pieces) >= 5, "the offline answer came as one piece"
    text = "".join(pieces)
    assert "exit status 3" in text
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices[0].finish_reason == "stop"
    plain = client.chat.completions.create(
        model="extractive",
        messages=[{"role": "user", "content": "What happens when the quota runs out while indexing?"}],
    )
    assert text.strip() == plain.choices[0].message.content


def test_embeddings_match_the_index_model(client: openai.OpenAI) -> None:
    texts = ["Quotas refresh every 8 or 24 hours.", "BM25 ranks chunks by stemmed words."]
    expected = LocalEmbedder().embed_sync(texts)
    # Left alone, the SDK asks for base64 and decodes it itself; both encodings must give the same vectors.
    for options in ({}, {"encoding_format": "float"}):
        result = client.embeddings.create(model=LOCAL, input=texts, **options)  # type: ignore[arg-type]
        assert result.model == LOCAL and [d.index for d in result.data] == [0, 1]
        vectors = np.array([d.embedding for d in result.data], dtype=np.float32)
        assert vectors.shape == (2, 384) and np.allclose(vectors, expected, atol=1e-5)
        assert result.usage.prompt_tokens == result.usage.total_tokens > 10
    raw = client.embeddings.create(model=LOCAL, input=texts[0], encoding_format="base64").data[0].embedding
    assert np.allclose(np.frombuffer(base64.b64decode(raw), dtype="<f4"), expected[0], atol=1e-5)  # type: ignore[arg-type]
    single = client.embeddings.create(model=LOCAL, input="one string")
    assert len(single.data) == 1 and math.isclose(float(np.linalg.norm(single.data[0].embedding)), 1.0, rel_tol=1e-4)


def test_errors_reach_the_sdk_with_a_code(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        client.embeddings.create(model="BAAI/bge-multilingual-gemma2", input="x")
    assert raised.value.code == "model_not_found" and LOCAL in raised.value.message
    with pytest.raises(openai.BadRequestError) as raised:
        client.embeddings.create(model=LOCAL, input="word " * 400)
    assert raised.value.code == "invalid_request" and "at most 256" in raised.value.message
    with pytest.raises(openai.BadRequestError) as raised:
        client.chat.completions.create(model="no/such-model", messages=[{"role": "user", "content": "hi"}])
    assert raised.value.code and raised.value.type == "ConfigError"
    with pytest.raises(openai.UnprocessableEntityError) as unprocessable:
        client.chat.completions.create(model="extractive", messages=[])
    assert unprocessable.value.code == "invalid_request" and "messages" in str(unprocessable.value.param)


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        ({"input": []}, 400, "input is empty"),
        ({"input": ["fine", "  "]}, 400, "input[1] is empty"),
        ({"input": [1, 2, 3]}, 400, "token ids"),
        ({"input": ["x"] * 2049}, 400, "at most 2048"),
        ({"input": "x", "dimensions": 64}, 400, "384 dimensions"),
        ({"input": "x", "encoding_format": "int8"}, 422, "encoding_format"),
    ],
)
def test_embedding_limits_are_errors_naming_the_input(base_url: str, body: dict, status: int, fragment: str) -> None:
    response = httpx.post(f"{base_url}/v1/embeddings", json=body, timeout=60)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert fragment in error["message"] and error["code"]


def test_unknown_paths_get_our_error_shape(base_url: str) -> None:
    for method, path, status in (("GET", "/nowhere", 404), ("GET", "/v1/nothing", 404), ("PUT", "/v1/ask", 405)):
        response = httpx.request(method, f"{base_url}{path}", timeout=30)
        assert response.status_code == status
        body = response.json()
        assert "detail" not in body and body["error"]["type"] and body["error"]["code"], body
        assert path in body["error"]["message"]


def test_the_openapi_schema_lists_the_openai_routes(base_url: str) -> None:
    paths = httpx.get(f"{base_url}/openapi.json", timeout=30).json()["paths"]
    assert {"/v1/models", "/v1/embeddings", "/v1/chat/completions"} <= set(paths)
    assert "/" not in paths and "/docs" not in paths


def test_index_not_built_yet_is_a_404_with_a_code(tmp_path: Path) -> None:
    with serve(create_app(Settings(index_dir=tmp_path / "none"))) as url:
        with openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0) as sdk:
            with pytest.raises(openai.NotFoundError) as raised:
                sdk.embeddings.create(model=LOCAL, input="x")
    assert raised.value.code == "index_not_found"
