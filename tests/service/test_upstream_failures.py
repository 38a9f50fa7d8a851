"""Upstream failures that never leak and never hang (issue 8, part 4), over real HTTP and the CLI.

The HTTP app runs under uvicorn on loopback, the CLI as a subprocess, both
against `tests/fakeapi.py`. With `IOINTELLIGENCE_API_KEY=sk-canary-...` and a
fake that echoes the key it was sent in 401 and 500 bodies, in a header and
in HTML pages with a traceback, no piece of 8 characters of the key may
appear in any response, CLI output or log line.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

from service.api import create_app
from service.config import Settings

from ..conftest import ROOT
from ..fakeapi import FakeConfig, FakeServer
from ..logcapture import captured_log_lines
from ..serving import serve

CANARY = "sk-canary-4f1d9a7c2e8b6053d1a9"
QUESTION = "What happens when the quota runs out while indexing?"


def leaked(text: str) -> str | None:
    """The first 8-character piece of the canary found in `text`, if any."""
    for i in range(len(CANARY) - 7):
        if CANARY[i : i + 8] in text:
            return CANARY[i : i + 8]
    return None


def assert_clean(*texts: str) -> None:
    for text in texts:
        assert leaked(text) is None, f"the key leaked: {text[:400]!r}"


def iorag(*args: str, cwd: Path, base_url: str, key: str | None = CANARY) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("IORAG_", "IOINTELLIGENCE_"))}
    env.update({"IOINTELLIGENCE_BASE_URL": base_url, "IORAG_BACKOFF_BASE": "0.01", "IORAG_MAX_RETRIES": "2"})
    if key:
        env["IOINTELLIGENCE_API_KEY"] = key
    return subprocess.run(
        [sys.executable, "-m", "service", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


@pytest.fixture(scope="module")
def logs() -> Iterator[list[str]]:
    with captured_log_lines() as lines:
        yield lines


@pytest.fixture(scope="module")
def server(logs: list[str]) -> Iterator[FakeServer]:
    with FakeServer(FakeConfig(api_key=CANARY, echo_key=True)) as running:
        yield running


@pytest.fixture(scope="module")
def index_dir(server: FakeServer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An index built offline (local model): answering it calls the upstream for chat only."""
    work = tmp_path_factory.mktemp("offline")
    result = iorag("index", str(ROOT / "corpora"), cwd=work, base_url=server.base_url, key=None)
    assert result.returncode == 0, result.stderr
    return work / ".iorag"


def settings(index_dir: Path, base_url: str, **changes: Any) -> Settings:
    values: dict[str, Any] = {
        "index_dir": index_dir, "base_url": base_url, "api_key": CANARY, "reload_interval": 0,
        "backoff_base": 0.01, "max_retries": 2,
    }
    values.update(changes)
    return Settings(**values)


def everything(response: httpx.Response) -> str:
    return response.text + "\n" + "\n".join(f"{k}: {v}" for k, v in response.headers.items())


# Scripts of the fake (one entry per upstream call) and what a client must get instead.
FAILURES = {
    "401 echoing the key": ({"api_key": "another-key"}, 502, "AuthenticationError"),
    "500 HTML with a traceback": ({"script": ["500html"] * 3}, 503, "ServiceUnavailableError"),
    "200 that is not JSON": ({"script": ["badjson"]}, 502, "InvalidResponseError"),
}


@pytest.mark.parametrize("case", list(FAILURES))
def test_no_piece_of_the_key_reaches_a_client_the_cli_or_a_log(
    case: str, server: FakeServer, index_dir: Path, logs: list[str]
) -> None:
    script, status, kind = FAILURES[case]

    def fresh() -> FakeConfig:  # a new script list each time: the fake consumes it
        changes = {"api_key": CANARY, "echo_key": True, **script}
        return FakeConfig(**{k: list(v) if isinstance(v, list) else v for k, v in changes.items()})

    server.reset(fresh())
    with serve(create_app(settings(index_dir, server.base_url))) as url, httpx.Client(base_url=url, timeout=30) as http:
        plain = http.post("/v1/ask", json={"question": QUESTION, "top_k": 3})
        assert plain.status_code == status, plain.text
        error = plain.json()["error"]
        assert error["type"] == kind and "<html" not in error["message"].lower()
        assert "Traceback" not in plain.text
        assert_clean(everything(plain))
        server.reset(fresh())
        with http.stream("POST", "/v1/ask", json={"question": QUESTION, "top_k": 3, "stream": True}) as streamed:
            body = streamed.read().decode()
        assert_clean(body, "\n".join(f"{k}: {v}" for k, v in streamed.headers.items()))
        assert streamed.status_code == status or "event: error" in body
    server.reset(fresh())
    result = iorag("ask", QUESTION, cwd=index_dir.parent, base_url=server.base_url)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert_clean(result.stdout, result.stderr)
    assert any("upstream answered" in line for line in logs)  # the debug log saw the upstream's body...
    assert_clean(*logs)  # ...redacted


def test_an_unfinished_stream_is_an_error_event_not_an_answer(server: FakeServer, index_dir: Path) -> None:
    server.reset(FakeConfig(api_key=CANARY, script=["cutstream"]))
    with serve(create_app(settings(index_dir, server.base_url))) as url, httpx.Client(base_url=url, timeout=30) as http:
        with http.stream("POST", "/v1/ask", json={"question": QUESTION, "top_k": 3, "stream": True}) as response:
            body = response.read().decode()
    assert response.status_code == 200
    assert "event: error" in body and "InvalidResponseError" in body and "ended before the answer was finished" in body
    events = [json.loads(line[6:]) for line in body.splitlines() if line.startswith("data: {")]
    assert not any("answer" in event for event in events if "error" not in event)  # never a complete answer


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_down_upstream_fails_fast_naming_the_host_and_health_says_down(index_dir: Path) -> None:
    port = _closed_port()
    down = f"http://127.0.0.1:{port}/api/v1"
    with serve(create_app(settings(index_dir, down, max_retries=6))) as url, httpx.Client(base_url=url, timeout=30) as http:
        assert http.get("/v1/health").json()["upstream"] == "up"
        # Load the local embedding model first, so that the times below are the upstream's alone.
        assert http.post("/v1/search", json={"query": QUESTION, "top_k": 3}).status_code == 200
        for _ in range(3):  # refused connections are not retried: each fails at once
            started = time.monotonic()
            response = http.post("/v1/ask", json={"question": QUESTION, "top_k": 3})
            assert response.status_code == 503 and f"127.0.0.1:{port}" in response.json()["error"]["message"]
            assert "connection refused" in response.json()["error"]["message"]
            assert time.monotonic() - started < 2.0
        started = time.monotonic()
        response = http.post("/v1/ask", json={"question": QUESTION, "top_k": 3})
        assert time.monotonic() - started < 2.0
        assert response.status_code == 503 and f"127.0.0.1:{port} is down" in response.json()["error"]["message"]
        assert "Retry-After" in response.headers
        assert http.get("/v1/health").json()["upstream"] == "down"


def test_health_says_off_without_a_key(index_dir: Path) -> None:
    with serve(create_app(Settings(index_dir=index_dir, reload_interval=0))) as url, httpx.Client(base_url=url) as http:
        assert http.get("/v1/health").json()["upstream"] == "off"
