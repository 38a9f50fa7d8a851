"""Offline answers about the sample corpus: the sentence that answers comes first.

Runs the real offline path (local MiniLM, hybrid search, extractive answer)
over corpora/, as a new user would after `make run`.
"""

from __future__ import annotations

import pytest

from indexer import Indexer
from service import RagService, Settings
from service.evaluate import first_sentence

from ..conftest import ROOT

QUESTIONS = [
    ("How are quotas refreshed?", "a shared credit pool that refreshes every 8 or 24 hours"),
    ("How many dimensions do mxbai-embed-large-v1 vectors have?", "returns vectors of 1,024 dimensions"),
    ("Which port does the server listen on by default?", "It listens on 127.0.0.1 port 8000 by default"),
    ("How do I get the answer streamed?", 'With "stream": true the answer arrives as server-sent events'),
    ("What status does an exhausted upstream quota get?", "and an exhausted upstream quota 429"),
    ("What does iorag do when IO Intelligence answers 429?", "iorag honours the Retry-After header"),
    ("Which Python version does iorag need?", "iorag needs Python 3.11 or newer"),
    ("What happens when an input is longer than the model's limit?", "is refused with HTTP status 400"),
]


@pytest.fixture(scope="module")
def rag(tmp_path_factory: pytest.TempPathFactory) -> RagService:
    index = tmp_path_factory.mktemp("corpus") / "idx"
    Indexer(index).index([str(ROOT / "corpora")])
    with RagService(Settings(index_dir=index)) as service:
        yield service


@pytest.mark.parametrize(("question", "sentence"), QUESTIONS)
def test_the_answering_sentence_comes_first(rag: RagService, question: str, sentence: str) -> None:
    answer = rag.ask(question)
    assert answer.model == "extractive"
    assert sentence in first_sentence(answer.answer), answer.answer
    # Whole sentences, each cited, and short.
    assert answer.answer.endswith("]") and len(answer.answer) <= 600

