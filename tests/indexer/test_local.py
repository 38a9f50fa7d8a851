"""The offline embedder, on the real ONNX model shipped in its wheel."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from indexer import local
from indexer.errors import EmbeddingError
from indexer.local import LocalEmbedder


@pytest.fixture(scope="module")
def embedder() -> LocalEmbedder:
    return LocalEmbedder()


def test_vectors_are_unit_length_in_input_order(embedder: LocalEmbedder) -> None:
    texts = ["a cat sat on the mat", "stock markets fell sharply today", "a kitten rested on a rug"]
    vectors = embedder.embed_sync(texts)
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    similarity = vectors @ vectors.T
    assert similarity[0, 2] > similarity[0, 1] + 0.2, "paraphrases should be closer than unrelated text"
    # Batching and sorting by length must not change a text's vector.
    alone = embedder.embed_sync([texts[2]])[0]
    assert np.allclose(alone, vectors[2], atol=1e-4)


def test_query_embedding_matches_document_embedding_without_prefix(embedder: LocalEmbedder) -> None:
    query = asyncio.run(embedder.embed_query("cats"))
    assert query.shape == (384,)
    assert np.allclose(query, embedder.embed_sync(["cats"])[0], atol=1e-5)


def test_over_limit_input_is_refused_not_truncated(embedder: LocalEmbedder) -> None:
    with pytest.raises(EmbeddingError, match="over"):
        embedder.embed_sync(["word " * 400])


def test_a_tampered_model_file_is_refused(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "model.onnx"
    fake.write_bytes(b"not the model")
    local._verify.cache_clear()
    monkeypatch.setattr(local, "model_file", lambda: fake)
    try:
        with pytest.raises(EmbeddingError, match="sha256"):
            LocalEmbedder()
    finally:
        local._verify.cache_clear()
