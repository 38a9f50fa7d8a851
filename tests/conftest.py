"""Shared test fixtures: a deterministic embedder, small corpora, isolated settings."""

from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import pytest

from indexer.catalog import Catalog, ModelInfo, default_catalog
from indexer.embedding import normalize
from indexer.errors import QuotaExhaustedError
from indexer.tokens import counter_for

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _no_api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests are offline unless they set a key (to the fake API) themselves."""
    for name in list(os.environ):
        if name.startswith("IORAG_") or name.startswith("IOINTELLIGENCE_"):
            monkeypatch.delenv(name)
    # A proxy from the environment would route even loopback calls elsewhere.
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)


def hash_vector(text: str, dims: int) -> np.ndarray:
    seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
    return normalize(np.random.default_rng(seed).standard_normal(dims))


class HashEmbedder:
    """A deterministic stand-in that records every batch it is asked to embed.

    Vectors are a hash of the text, so identical texts get identical vectors and
    tests can compare indexes built in different ways. `fail_after` batches
    raises QuotaExhaustedError, like an API whose quota ran out.
    """

    def __init__(self, model_id: str = "test/hash-64", dims: int = 32, limit: int = 64) -> None:
        self.model = ModelInfo(
            id=model_id, kind="embedding", context_length=limit, tokenizer="bert-uncased", dims=dims, provider="local"
        )
        self.counter = counter_for(self.model)
        self.concurrency = 2
        self.max_batch_items = 4
        self.max_batch_tokens = 4 * limit
        self.batches: list[list[str]] = []
        self.queries: list[str] = []
        self.fail_after: int | None = None

    @property
    def embedded(self) -> list[str]:
        return [text for batch in self.batches for text in batch]

    async def embed_batch(self, texts: Sequence[str]) -> np.ndarray:
        if self.fail_after is not None and len(self.batches) >= self.fail_after:
            raise QuotaExhaustedError("quota exhausted (test)")
        for text in texts:
            assert self.counter.count(text) <= self.model.context_length, "chunk over the limit"
        self.batches.append(list(texts))
        await asyncio.sleep(0)
        return np.stack([hash_vector(t, self.model.dims) for t in texts])

    async def embed_query(self, text: str) -> np.ndarray:
        self.queries.append(text)
        return hash_vector(text, self.model.dims)

    async def aclose(self) -> None:
        return None


@pytest.fixture
def hash_embedder() -> HashEmbedder:
    return HashEmbedder()


def catalog_with(*models: ModelInfo) -> Catalog:
    return default_catalog().merged(models)


def write_corpus(root: Path, docs: dict[str, str]) -> Path:
    """Write `name -> text` files under root and return root."""
    root.mkdir(parents=True, exist_ok=True)
    for name, text in docs.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


SAMPLE_DOCS = {
    "cats.md": "# Cats\n\nCats are small carnivorous mammals. They sleep most of the day.\n\n"
    "## Food\n\nCats eat meat, mostly fish and chicken.\n",
    "dogs.md": "# Dogs\n\nDogs are loyal companions. They were domesticated from wolves.\n\n"
    "## Training\n\nDogs learn commands through repetition and rewards.\n",
    "notes/space.txt": "The Moon orbits the Earth every 27 days. Mars has two small moons, Phobos and Deimos.",
    "birds.html": "<html><head><title>Birds</title></head><body><h1>Birds</h1>"
    "<p>Birds have feathers and lay eggs. Penguins cannot fly but swim well.</p></body></html>",
}


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    return write_corpus(tmp_path / "corpus", SAMPLE_DOCS)
