"""Writes never stall reads: over real uvicorn, searches and health checks answer while a large
document is being chunked, embedded and published, and see it once it is published."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import httpx

from indexer.pipeline import Indexer
from service.api import create_app
from service.config import Settings

from ..conftest import ROOT
from ..serving import serve


def _large_document() -> str:
    # About 120 chunks for the local model: long enough that the write takes a while.
    topics = ["harbor", "lattice", "glacier", "saffron", "basalt", "juniper"]
    return "\n\n".join(
        f"## Section {i}\n\n" + " ".join(
            f"The {topics[(i + j) % 6]} survey number {i}-{j} recorded a steady tide of readings." for j in range(12)
        )
        for i in range(120)
    )


def test_search_answers_while_a_large_write_is_in_progress(tmp_path: Path) -> None:
    index_dir = tmp_path / "index"
    Indexer(index_dir).index([ROOT / "corpora"])
    with serve(create_app(Settings(index_dir=index_dir, reload_interval=0))) as url:
        outcome: dict[str, Any] = {}

        def write() -> None:
            with httpx.Client(base_url=url, timeout=600) as http:
                outcome["started"] = time.monotonic()
                outcome["response"] = http.post("/v1/documents", json={"documents": [
                    {"id": "survey", "title": "Tide survey", "text": _large_document()}
                ]})
                outcome["finished"] = time.monotonic()

        writer = threading.Thread(target=write)
        answered: list[tuple[float, list[str]]] = []
        with httpx.Client(base_url=url, timeout=60) as http:
            writer.start()
            while writer.is_alive():
                response = http.post("/v1/search", json={"query": "tide survey readings", "top_k": 3})
                assert response.status_code == 200, response.text
                answered.append((time.monotonic(), [r["doc_id"] for r in response.json()["results"]]))
                assert http.get("/v1/health").status_code == 200
            writer.join()
            after = http.post("/v1/search", json={"query": "glacier survey tide readings", "top_k": 3}).json()
        response = outcome["response"]
        assert response.status_code == 200, response.text
        assert response.json()["chunks_embedded"] >= 50
        during = [ids for at, ids in answered if outcome["started"] < at < outcome["finished"]]
        # Searches kept answering (from the index as it was) while the write ran.
        assert len(during) >= 3, f"only {len(during)} searches answered during the write"
        assert "survey" not in during[0]
        assert after["results"][0]["doc_id"] == "survey"
        assert "location" in after["results"][0]
