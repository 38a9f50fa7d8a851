"""`iorag keys add | list | revoke`, `--collection` on the CLI, and `serve`'s refusal to go public without keys."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import httpx
from click.testing import CliRunner

from service.api import create_app
from service.api.observability import JsonFormatter, RequestIdFilter
from service.cli import cli
from service.config import Settings
from service.keys import KeyStore

from ..conftest import write_corpus
from ..serving import serve


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_keys_add_prints_the_secret_once_and_stores_a_hash(tmp_path: Path) -> None:
    index = str(tmp_path / "index")
    code, out, err = run("keys", "add", "ci-bot", "--scope", "write", "--collection", "docs", "--index", index)
    assert code == 0, err
    secret = out.strip()
    assert secret.startswith("iorag_") and len(secret) > 40
    stored = (tmp_path / "index" / "keys.json").read_text()
    assert secret not in stored and "ci-bot" in stored
    assert KeyStore(tmp_path / "index" / "keys.json").find(secret).collection == "docs"  # type: ignore[union-attr]
    code, out, _ = run("keys", "list", "--index", index)
    assert code == 0 and "ci-bot" in out and "write" in out and "docs" in out and secret not in out
    code, out, _ = run("keys", "list", "--index", index, "--json")
    assert json.loads(out)["keys"][0]["name"] == "ci-bot"
    code, _, err = run("keys", "add", "ci-bot", "--scope", "read", "--index", index)
    assert code == 1 and "exists" in err and "Traceback" not in err
    code, _, err = run("keys", "add", "x", "--scope", "read", "--collection", "../etc", "--index", index)
    assert code == 1 and "invalid collection name" in err
    assert run("keys", "revoke", "ci-bot", "--index", index)[0] == 0
    assert KeyStore(tmp_path / "index" / "keys.json").find(secret) is None
    code, _, err = run("keys", "revoke", "ci-bot", "--index", index)
    assert code == 1 and "no key named" in err


def test_serve_refuses_a_public_address_without_keys(tmp_path: Path) -> None:
    code, _, err = run("serve", "--index", str(tmp_path), "--host", "0.0.0.0")
    assert code == 2
    assert err.count("\n") == 1 and "refusing to serve 0.0.0.0 without API keys" in err and "--insecure" in err


def test_index_search_and_ask_take_a_collection(tmp_path: Path) -> None:
    index = str(tmp_path / "index")
    corpus = write_corpus(tmp_path / "c", {"moon.txt": "The Moon orbits the Earth every 27 days."})
    assert run("index", str(corpus), "--index", index, "--collection", "space")[0] == 0
    assert (tmp_path / "index" / "collections" / "space" / "CURRENT").is_file()
    assert not (tmp_path / "index" / "CURRENT").exists()
    code, out, _ = run("search", "Moon orbit", "--index", index, "--collection", "space", "--json")
    assert code == 0 and json.loads(out)["results"][0]["doc_id"].endswith("moon.txt")
    code, _, err = run("search", "Moon", "--index", index)
    assert code == 1 and "iorag index" in err
    code, _, err = run("ask", "Moon?", "--index", index, "--collection", "../x")
    assert code == 2 and "invalid setting collection" in err


def test_json_logs_carry_the_request_id(tmp_path: Path) -> None:
    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(self.format(record))

    handler = Collect()
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RequestIdFilter())
    logger = logging.getLogger("iorag.access")
    logger.addHandler(handler)
    old_level = logger.level
    logger.setLevel(logging.INFO)
    try:
        with serve(create_app(Settings(index_dir=tmp_path / "none"))) as url, httpx.Client(base_url=url) as http:
            http.get("/v1/health", headers={"X-Request-ID": "req-123"})
            answer = http.post("/v1/search", json={"query": "x"})
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
    entries = [json.loads(line) for line in lines]
    assert entries[0]["request_id"] == "req-123" and entries[0]["route"] == "/v1/health" and entries[0]["status"] == 200
    assert entries[1]["request_id"] == answer.headers["x-request-id"] and entries[1]["status"] == 404
