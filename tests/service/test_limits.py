"""Request limits over real uvicorn: body caps while reading, rate limits, concurrency, timeouts, spend."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Iterator
from urllib.parse import urlparse

import httpx
import pytest
import uvicorn

from indexer.models import Document
from indexer.store import IndexDirectory
from service.api import create_app
from service.api.server import server_config
from service.config import Settings
from service.indexing import build_indexer
from service.rag import SERVER_HOLDER

from ..conftest import ROOT
from ..serving import serve

MB = 1 << 20


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("limits") / "index"
    build_indexer(Settings(index_dir=root)).add_documents([Document(id="d1", text="Limits keep a shared server up.")])
    return root


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def send_raw(url: str, head: bytes, body_chunks: Iterator[bytes]) -> bytes:
    """Send a request over a raw socket, stopping when the server answers or closes; return the answer."""
    parts = urlparse(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as sock:
        sock.sendall(head)
        sock.setblocking(False)
        answer = b""
        for chunk in body_chunks:
            try:
                answer += sock.recv(65536)
            except BlockingIOError:
                pass
            if answer:
                break
            try:
                sock.setblocking(True)
                sock.sendall(chunk)
                sock.setblocking(False)
            except (BrokenPipeError, ConnectionResetError):
                break
        sock.setblocking(True)
        sock.settimeout(10)
        try:
            while not answer.endswith(b"}") and len(answer) < 65536:
                data = sock.recv(65536)
                if not data:
                    break
                answer += data
        except (ConnectionResetError, TimeoutError):
            pass
    return answer


def test_a_200_mb_body_is_refused_while_server_memory_stays_flat(index_dir: Path) -> None:
    worker = subprocess.Popen(
        [sys.executable, "-m", "tests.service.serve_worker", str(index_dir)],
        cwd=ROOT, stdout=subprocess.PIPE, text=True,
    )
    try:
        url = worker.stdout.readline().strip()  # type: ignore[union-attr]
        assert url.startswith("http://127.0.0.1:")
        with httpx.Client(base_url=url, timeout=60) as http:
            assert http.post("/v1/search", json={"query": "limits"}).status_code == 200  # warm up
        before = rss_kb(worker.pid)
        size = 200 * MB
        chunk = b"x" * MB
        declared = f"POST /v1/ask HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {size}\r\n\r\n"
        answer = send_raw(url, declared.encode(), iter([chunk] * 200))
        assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
        assert b"PayloadTooLargeError" in answer
        # No Content-Length: counted as it arrives, refused once past the cap.
        chunked = "POST /v1/ask HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        framed = b"%x\r\n" % len(chunk) + chunk + b"\r\n"
        answer = send_raw(url, chunked.encode(), iter([framed] * 200))
        assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
        grown_mb = (rss_kb(worker.pid) - before) / 1024
        assert grown_mb < 50, f"server RSS grew {grown_mb:.0f} MB"
    finally:
        worker.kill()
        worker.wait()


def test_body_and_field_caps(index_dir: Path) -> None:
    settings = Settings(index_dir=index_dir, max_body_bytes=64 * 1024)
    with serve(create_app(settings)) as url, httpx.Client(base_url=url, timeout=60) as http:
        big = http.post("/v1/ask", json={"question": "x" * 70_000})
        assert big.status_code == 413 and big.json()["error"]["type"] == "PayloadTooLargeError"
        assert "65,536" in big.json()["error"]["message"]
        deep = {"a": {"b": {"c": {"d": {"e": 1}}}}}
        response = http.post("/v1/documents", json={"documents": [{"id": "m", "text": "t", "metadata": deep}]})
        assert response.status_code == 422 and "nested deeper" in response.json()["error"]["message"]
        wide = {"k": "v" * 20_000}
        response = http.post("/v1/documents", json={"documents": [{"id": "m", "text": "t", "metadata": wide}]})
        assert response.status_code == 422 and "bytes as JSON" in response.json()["error"]["message"]


def test_over_the_rate_limit_is_429_with_headers(index_dir: Path) -> None:
    # Without keys, only a server shared on purpose (--insecure) counts requests per address.
    with serve(create_app(Settings(index_dir=index_dir, rate_limit=3))) as url, httpx.Client(base_url=url) as http:
        assert all(http.get("/v1/models").status_code == 200 for _ in range(5))
    shared = Settings(index_dir=index_dir, rate_limit=3, insecure=True)
    with serve(create_app(shared)) as url, httpx.Client(base_url=url) as http:
        answers = [http.get("/v1/models") for _ in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert [a.headers["x-ratelimit-remaining"] for a in answers] == ["2", "1", "0", "0"]
    assert all(a.headers["x-ratelimit-limit"] == "3" for a in answers)
    assert 1 <= int(answers[3].headers["retry-after"]) <= 60
    assert 0 <= int(answers[3].headers["x-ratelimit-reset"]) <= 60
    assert answers[3].json()["error"]["type"] == "RateLimitedError"


def test_beyond_the_concurrency_cap_is_503_with_retry_after(index_dir: Path) -> None:
    with serve(create_app(Settings(index_dir=index_dir, max_concurrency=1))) as url:
        parts = urlparse(url)
        # A request whose body never finishes holds the only slot.
        with socket.create_connection((parts.hostname, parts.port)) as held:
            held.sendall(b"POST /v1/search HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{")
            time.sleep(0.3)
            with httpx.Client(base_url=url) as http:
                busy = http.get("/v1/health")
        assert busy.status_code == 503 and busy.headers["retry-after"] == "1"
        assert busy.json()["error"]["type"] == "OverloadedError"


def test_slow_request_headers_are_cut_off(index_dir: Path) -> None:
    settings = Settings(index_dir=index_dir, header_timeout=0.5)
    server = uvicorn.Server(server_config(create_app(settings), settings, host="127.0.0.1", port=0, own_logging=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n")  # never finishes its headers
            started = time.monotonic()
            assert sock.recv(1024) == b""  # closed by the server
            assert time.monotonic() - started < 4
    finally:
        server.should_exit = True
        thread.join(10)


def test_connections_send_without_waiting_for_acks(index_dir: Path) -> None:
    # A listening socket as `iorag serve` makes it (proto 0): asyncio leaves Nagle on for what it accepts.
    settings = Settings(index_dir=index_dir)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    server = uvicorn.Server(server_config(create_app(settings), settings, host="127.0.0.1", port=port, own_logging=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
            assert sock.recv(1024).startswith(b"HTTP/1.1 200")
            (connection,) = server.server_state.connections
            accepted = connection.transport.get_extra_info("socket")
            assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    finally:
        server.should_exit = True
        thread.join(10)
        listener.close()


def test_models_and_completion_budget_are_limited_for_http_callers(index_dir: Path) -> None:
    settings = Settings(index_dir=index_dir, allowed_models="extractive,meta-llama/Llama-3.3-70B-Instruct",
                        max_completion_tokens=256)
    with serve(create_app(settings)) as url, httpx.Client(base_url=url, timeout=60) as http:
        refused = http.post("/v1/ask", json={"question": "limits?", "model": "deepseek-ai/DeepSeek-R1-0528"})
        assert refused.status_code == 400 and refused.json()["error"]["type"] == "NotAllowedError"
        assert "meta-llama/Llama-3.3-70B-Instruct" in refused.json()["error"]["message"]
        chat = http.post("/v1/chat/completions", json={"model": "other/model", "messages": [{"role": "user", "content": "x"}]})
        assert chat.status_code == 400 and "extractive" in chat.json()["error"]["message"]
        capped = http.post("/v1/ask", json={"question": "limits?", "max_completion_tokens": 5000})
        assert capped.status_code == 400 and "256" in capped.json()["error"]["message"]
        assert http.post("/v1/ask", json={"question": "limits?", "max_completion_tokens": 200}).status_code == 200


def test_a_busy_index_is_409_with_retry_after_naming_the_writer(index_dir: Path) -> None:
    with serve(create_app(Settings(index_dir=index_dir))) as url, httpx.Client(base_url=url, timeout=60) as http:
        with IndexDirectory(index_dir).writer(holder="`iorag index`"):
            busy = http.post("/v1/documents", json={"documents": [{"id": "new", "text": "A new document."}]})
    assert busy.status_code == 409 and int(busy.headers["retry-after"]) >= 1
    assert "`iorag index`" in busy.json()["error"]["message"]


def test_the_cli_says_when_the_server_holds_the_lock(index_dir: Path, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from service.cli import cli

    source = tmp_path / "note.txt"
    source.write_text("A note to index.")
    with IndexDirectory(index_dir).writer(holder=SERVER_HOLDER):
        result = CliRunner().invoke(cli, ["index", str(source), "--index", str(index_dir)])
    assert result.exit_code == 1
    assert "iorag server" in result.output and "retry in a few seconds" in result.output
    assert "another `iorag index`" not in result.output


def test_the_model_list_is_cached_for_its_ttl(index_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import service.model_list as model_list

    calls: list[bool | None] = []
    real = model_list.list_models

    async def counted(settings: Settings, remote: bool | None = None):  # type: ignore[no-untyped-def]
        calls.append(remote)
        return await real(settings, remote)

    monkeypatch.setattr(model_list, "list_models", counted)
    with serve(create_app(Settings(index_dir=index_dir, models_ttl=300))) as url, httpx.Client(base_url=url) as http:
        first = [http.get("/v1/models").json() for _ in range(3)]
    assert len(calls) == 1 and first[0] == first[2] and first[0]["data"]
    calls.clear()
    with serve(create_app(Settings(index_dir=index_dir, models_ttl=0))) as url, httpx.Client(base_url=url) as http:
        for _ in range(2):
            http.get("/v1/models")
    assert len(calls) == 2
