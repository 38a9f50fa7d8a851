"""Conversations: a follow-up is made to stand alone before retrieval, and earlier turns reach the prompt."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path
from typing import Iterator

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from indexer.pipeline import Indexer
from indexer.tokens import counter_for_family
from service import Answer, RagService, Settings
from service.api import create_app
from service.conversation import (
    MAX_ADDED_TERMS_SELF_CONTAINED,
    REWRITE_SYSTEM,
    Turn,
    as_turns,
    is_follow_up,
    rewrite_messages,
    salient_terms,
    standalone_offline,
)
from service.errors import QueryError
from service.prompting import Budget, count_messages

from ..conftest import ROOT
from ..fakeapi import FakeConfig, FakeServer
from ..serving import serve

#: Two-turn chats about corpora/: the follow-up alone finds another document first.
CHATS = [
    # Alone: the quota section of io-intelligence-limits.md; meant: the RRF constant in chunking-and-retrieval.md.
    ("How does hybrid search merge dense and lexical rankings?", "What constant does it use?", "60"),
    # Alone: faq.txt; meant: the exit status section of iorag-guide.md.
    ("What does exit status 3 mean?", "And what should I do after it?", "run the same command again"),
]


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("conversation") / "index"
    Indexer(path).index([ROOT / "corpora"])
    return path


def top_doc(sources: list) -> str:
    first = sources[0]
    return first["doc_id"] if isinstance(first, dict) else first.chunk.doc_id


# --- offline, in the library -------------------------------------------------------------


@pytest.mark.parametrize(("first", "follow_up", "expected"), CHATS)
def test_a_follow_up_retrieves_the_document_of_the_first_question(
    index_dir: Path, first: str, follow_up: str, expected: str
) -> None:
    with RagService(Settings(index_dir=index_dir)) as rag:
        opening = rag.ask(first, top_k=3)
        alone = rag.ask(follow_up, top_k=3)
        history = [{"role": "user", "content": first}, {"role": "assistant", "content": opening.answer}]
        followed = rag.ask(follow_up, top_k=3, history=history)
    assert top_doc(alone.sources) != top_doc(opening.sources), "the follow-up alone already finds it: no test"
    assert top_doc(followed.sources) == top_doc(opening.sources)
    assert followed.query.startswith(follow_up) and followed.query != follow_up
    assert alone.query == follow_up
    assert expected in followed.answer


def test_the_library_takes_turn_objects_and_an_empty_history(index_dir: Path) -> None:
    first, follow_up, _ = CHATS[0]
    with RagService(Settings(index_dir=index_dir)) as rag:
        with_turns = rag.ask(follow_up, history=[Turn("user", first)])
        with_dicts = rag.ask(follow_up, history=[{"role": "user", "content": first}])
        assert rag.ask(follow_up, history=[]).query == follow_up
    assert with_turns.query == with_dicts.query and with_turns.sources == with_dicts.sources


# --- offline, over HTTP ------------------------------------------------------------------


@pytest.fixture(scope="module")
def http(index_dir: Path) -> Iterator[httpx.Client]:
    with serve(create_app(Settings(index_dir=index_dir, reload_interval=0))) as url:
        with httpx.Client(base_url=url, timeout=60) as client:
            yield client


@pytest.mark.parametrize(("first", "follow_up", "expected"), CHATS)
def test_ask_and_chat_completions_use_the_conversation(
    http: httpx.Client, first: str, follow_up: str, expected: str
) -> None:
    opening = http.post("/v1/ask", json={"question": first, "top_k": 3}).json()
    history = [{"role": "user", "content": first}, {"role": "assistant", "content": opening["answer"]}]
    asked = http.post("/v1/ask", json={"question": follow_up, "top_k": 3, "history": history})
    assert asked.status_code == 200, asked.text
    assert top_doc(asked.json()["sources"]) == top_doc(opening["sources"])
    assert asked.json()["query"] != follow_up and expected in asked.json()["answer"]

    messages = [{"role": "system", "content": "Be brief."}, *history, {"role": "user", "content": follow_up}]
    chat = http.post("/v1/chat/completions", json={"model": "extractive", "messages": messages, "top_k": 3})
    assert chat.status_code == 200, chat.text
    assert top_doc(chat.json()["sources"]) == top_doc(opening["sources"])


def test_a_history_turn_with_another_role_is_refused(http: httpx.Client) -> None:
    body = {"question": "And then?", "history": [{"role": "system", "content": "x"}]}
    response = http.post("/v1/ask", json=body)
    assert response.status_code == 422 and response.json()["error"]["param"].startswith("history")


# --- the offline rewrite -------------------------------------------------------------------


def test_salient_terms_favour_the_latest_question() -> None:
    history = [
        Turn("user", "How are quotas refreshed?"),
        Turn("assistant", "Every 8 or 24 hours, in a shared credit pool."),
        Turn("user", "Which tokenizer does mxbai-embed-large-v1 use?"),
    ]
    terms = salient_terms("And its dimensions?", history)
    assert terms[:2] == ["tokenizer", "mxbai-embed-large-v1"]
    assert "quotas" in terms and "credit" not in terms, "assistant turns are not mined"
    # Rarity: a word every chunk holds (0 here) is left out.
    assert "tokenizer" not in salient_terms("And its dimensions?", history, rarity=lambda w: 0.0 if w == "tokenizer" else 1.0)


def test_a_self_contained_question_gets_few_words_and_no_history_none() -> None:
    history = [Turn("user", "How do quotas refresh, and what happens to indexing when they run out?")]
    assert not is_follow_up("How does BM25 rank chunks with stemmed words?")
    added = standalone_offline("How does BM25 rank chunks with stemmed words?", history)
    assert len(added.split()) - 8 <= MAX_ADDED_TERMS_SELF_CONTAINED
    assert is_follow_up("And what about it?") and is_follow_up("Why?")
    assert standalone_offline("  Why?  ", []) == "Why?"
    assert standalone_offline("Why?", [Turn("assistant", "Because quotas refresh.")]) == "Why?"


def test_history_is_validated() -> None:
    with pytest.raises(QueryError, match=r"history\[0\]\.role"):
        as_turns([{"role": "system", "content": "x"}])
    with pytest.raises(QueryError, match=r"history\[1\]\.content"):
        as_turns([{"role": "user", "content": "a"}, {"role": "assistant", "content": None}])
    assert as_turns([{"role": "user", "content": "  "}, Turn("assistant", " b ")]) == [Turn("assistant", "b")]


_turns = st.lists(
    st.tuples(st.sampled_from(["user", "assistant"]), st.text(max_size=600)),
    max_size=30,
)


@settings(deadline=None, max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(
    turns=_turns,
    question=st.text(min_size=1, max_size=300),
    prompt_tokens=st.integers(20, 3000),
    family=st.sampled_from(["llama3", "other", "bert-uncased"]),
    seed=st.integers(0, 1000),
)
def test_the_rewrite_prompt_never_exceeds_its_budget(
    turns: list[tuple[str, str]], question: str, prompt_tokens: int, family: str, seed: int
) -> None:
    rng = random.Random(seed)
    # Hypothesis' texts plus long prose turns, to overflow most budgets.
    history = [Turn(role, text) for role, text in turns] + [  # type: ignore[arg-type]
        Turn(rng.choice(["user", "assistant"]), " ".join(["quota refresh tokens"] * rng.randint(1, 300)))
        for _ in range(rng.randint(0, 6))
    ]
    rng.shuffle(history)
    counter = counter_for_family(family)
    budget = Budget(context_length=prompt_tokens + 160 + 32, max_completion_tokens=160, margin=32)
    messages = rewrite_messages(question, history, counter, budget)
    if messages is None:
        return
    assert count_messages(messages, counter) <= budget.prompt_tokens
    assert messages[0]["content"] == REWRITE_SYSTEM and question.strip() in messages[1]["content"]


# --- with a chat model (the fake API) --------------------------------------------------------

LLAMA = "meta-llama/Llama-3.3-70B-Instruct"
SMALL = "acme/Small-Chat-8K"
REWRITTEN = "Which constant does reciprocal rank fusion use in hybrid search?"


@pytest.fixture(scope="module")
def fake_server() -> Iterator[FakeServer]:
    with FakeServer() as running:
        yield running


def remote(index_dir: Path, fake: FakeServer, **changes: object) -> Settings:
    return Settings(
        index_dir=index_dir, api_key=fake.config.api_key, base_url=fake.base_url, max_retries=0, **changes
    )


def test_a_chat_model_rewrites_the_follow_up_and_sees_the_turns(index_dir: Path, fake_server: FakeServer) -> None:
    first, follow_up, _ = CHATS[0]
    fake_server.reset(FakeConfig(replies={f"Last question: {follow_up}": REWRITTEN}))
    history = [{"role": "user", "content": first}, {"role": "assistant", "content": "They are fused by rank."}]
    with RagService(remote(index_dir, fake_server)) as rag:
        answer = rag.ask(follow_up, history=history, top_k=3)
    rewrite, reply = fake_server.log.of("chat")
    assert rewrite.inputs[0] == f"system: {REWRITE_SYSTEM}" and first in rewrite.inputs[1]
    assert answer.query == REWRITTEN and answer.model == LLAMA
    # The answer's prompt: system, the two earlier turns in order, then sources and the question.
    assert [line.split(":", 1)[0] for line in reply.inputs] == ["system", "user", "assistant", "user"]
    assert reply.inputs[1] == f"user: {first}" and reply.inputs[-1].endswith(f"Question: {follow_up}")
    assert answer.usage.prompt_tokens == rewrite.tokens[0] + reply.tokens[0]


def test_a_failed_rewrite_falls_back_to_the_offline_method(index_dir: Path, fake_server: FakeServer) -> None:
    first, follow_up, _ = CHATS[0]
    fake_server.reset(FakeConfig(script=[503]))  # the rewrite call fails; the answer call succeeds
    with RagService(remote(index_dir, fake_server)) as rag:
        answer = rag.ask(follow_up, history=[{"role": "user", "content": first}], top_k=3)
    assert [r.status for r in fake_server.log.of("chat")] == [503, 200]
    assert answer.query.startswith(follow_up) and answer.query not in (follow_up, REWRITTEN)


def test_a_long_conversation_stays_inside_a_small_models_context(index_dir: Path, fake_server: FakeServer) -> None:
    first, follow_up, _ = CHATS[0]
    fake_server.reset(FakeConfig(replies={f"Last question: {follow_up}": REWRITTEN}))
    rng = random.Random(7)
    words = "quota refresh tokens budget chunk index search fusion rank dense lexical".split()
    history = []
    for turn in range(40):
        text = " ".join(rng.choice(words) for _ in range(400))
        history.append({"role": "user" if turn % 2 == 0 else "assistant", "content": f"{first} {text}"})
    settings = remote(index_dir, fake_server, chat_model=SMALL)
    with RagService(settings) as rag:
        answer = rag.ask(follow_up, history=history, top_k=8)
    streamed = asyncio.run(final_of_stream(settings, follow_up, history))
    statuses = [r.status for r in fake_server.log.of("chat")]
    assert statuses == [200] * 4, statuses  # the fake refuses any prompt over 8,192 tokens with 400
    assert answer.query == REWRITTEN and streamed.query == REWRITTEN
    assert 0 < answer.context.tokens <= answer.context.budget  # type: ignore[operator]


async def final_of_stream(settings: Settings, question: str, history: list[dict[str, str]]) -> Answer:
    async with RagService(settings) as rag:
        async for event in rag.aask_stream(question, history=history, top_k=8):
            if event.answer is not None:
                return event.answer
    raise AssertionError("the stream ended without an answer")
