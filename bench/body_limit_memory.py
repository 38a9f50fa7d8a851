"""Server memory while 200 MB request bodies are refused (413), measured from /proc.

Starts `tests/service/serve_worker.py` (the real app under uvicorn) in a
subprocess over a one-document index, serves one search, then sends a 200 MB
`POST /v1/ask` with Content-Length and again chunked, over a raw socket, and
prints the answer, the time to it and the server's RSS after each.

    PYTHONPATH=. python bench/body_limit_memory.py
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from indexer.models import Document
from service.config import Settings
from service.indexing import build_indexer
from tests.service.test_limits import MB, rss_kb, send_raw


def main() -> None:
    with tempfile.TemporaryDirectory() as work:
        root = Path(work) / "index"
        build_indexer(Settings(index_dir=root)).add_documents([Document(id="d1", text="Limits keep a server up.")])
        worker = subprocess.Popen(
            [sys.executable, "-m", "tests.service.serve_worker", str(root)], stdout=subprocess.PIPE, text=True
        )
        try:
            url = worker.stdout.readline().strip()  # type: ignore[union-attr]
            httpx.post(url + "/v1/search", json={"query": "limits"})
            print(f"| before | | | {rss_kb(worker.pid) / 1024:.1f} MB |")
            head = "POST /v1/ask HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            cases = (
                ("200 MB, Content-Length", f"{head}Content-Length: {200 * MB}\r\n\r\n", b"x" * MB),
                ("200 MB, chunked", f"{head}Transfer-Encoding: chunked\r\n\r\n", b"%x\r\n" % MB + b"x" * MB + b"\r\n"),
            )
            for label, request, chunk in cases:
                started = time.monotonic()
                answer = send_raw(url, request.encode(), iter([chunk] * 200))
                status = answer[9:12].decode()
                print(f"| {label} | {status} | {time.monotonic() - started:.2f} s | {rss_kb(worker.pid) / 1024:.1f} MB |")
        finally:
            worker.kill()
            worker.wait()


if __name__ == "__main__":
    main()
