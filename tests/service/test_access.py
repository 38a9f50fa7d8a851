"""Keys, scopes and collections over real uvicorn on loopback: the auth matrix and tenant isolation."""

from __future__ import annotations

import contextlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import httpx
import pytest

from indexer.models import Document
from service.api import create_app
from service.api.access import OPEN, rule_for
from service.config import Settings
from service.indexing import build_indexer
from service.keys import KeyStore

from ..conftest import write_corpus
from ..serving import serve

ALPHA_SECRET = "The alpha launch code is ZEBRA-ALPHA-7731, kept in the blue vault."
BETA_SECRET = "The beta launch code is OKAPI-BETA-4410, kept in the green vault."
BETA_MARKERS = ("OKAPI", "beta-doc", "green vault")


@dataclass
class Server:
    url: str
    root: Path
    keys: dict[str, str]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("access") / "index"
    base = Settings(index_dir=root, reload_interval=0)
    files = write_corpus(root.parent / "files", {"handbook.md": "# Handbook\n\nThe office opens at nine in the morning."})
    with contextlib.chdir(files):  # document ids are paths relative to where `iorag index` runs
        build_indexer(base).index(["handbook.md"])
    build_indexer(base.for_collection("alpha")).add_documents([Document(id="alpha-doc", text=ALPHA_SECRET, source="api")])
    build_indexer(base.for_collection("beta")).add_documents([Document(id="beta-doc", text=BETA_SECRET, source="api")])
    store = KeyStore(base.keys_path)
    keys = {
        "admin": store.add("ops", "admin"),
        "read": store.add("reader", "read"),
        "write": store.add("writer", "write"),
        "read-alpha": store.add("alpha-reader", "read", "alpha"),
        "write-alpha": store.add("alpha-writer", "write", "alpha"),
        "admin-alpha": store.add("alpha-admin", "admin", "alpha"),
        "read-beta": store.add("beta-reader", "read", "beta"),
    }
    with serve(create_app(base)) as url:
        yield Server(url, root, keys)


@pytest.fixture
def http(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=60) as client:
        yield client


def auth(key: str, collection: str | None = None) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {key}"}
    if collection:
        headers["X-Collection"] = collection
    return headers


def api_routes(http: httpx.Client) -> list[tuple[str, str]]:
    """Every operation the server documents under /v1 and /metrics, with its path parameters filled."""
    spec = http.get("/openapi.json").json()
    routes = []
    for path, operations in spec["paths"].items():
        for method in operations:
            routes.append((method.upper(), re.sub(r"\{[^}]+\}", "zz-missing", path)))
    return [(m, p) for m, p in routes if rule_for(m, p) is not None]


def call(http: httpx.Client, method: str, path: str, headers: dict[str, str]) -> httpx.Response:
    # An empty JSON object: a granted caller gets a validation error (no work done), a refused one 401/403.
    body = {} if method in ("POST", "PUT", "PATCH") else None
    return http.request(method, path, json=body, headers=headers)


def test_the_spec_documents_bearer_auth_and_every_refusal(http: httpx.Client) -> None:
    spec = http.get("/openapi.json").json()
    assert spec["components"]["securitySchemes"]["bearer"] == {
        "type": "http", "scheme": "bearer", "description": spec["components"]["securitySchemes"]["bearer"]["description"]
    }
    search = spec["paths"]["/v1/search"]["post"]
    assert search["security"] == [{"bearer": []}]
    assert {"401", "403", "413", "429", "503"} <= set(search["responses"])
    assert any(p["name"] == "X-Collection" for p in search["parameters"])
    assert "401" not in spec["paths"]["/v1/health"]["get"]["responses"]


def test_every_api_route_refuses_a_missing_or_unknown_key(http: httpx.Client) -> None:
    routes = api_routes(http)
    assert ("POST", "/v1/search") in routes and ("GET", "/metrics") in routes and len(routes) >= 10
    for method, path in routes:
        if rule_for(method, path).need == OPEN:
            continue
        for headers in ({}, auth("iorag_not-a-key"), {"Authorization": "Basic dXNlcjpwYXNz"}):
            response = call(http, method, path, headers)
            assert response.status_code == 401, (method, path, headers, response.text)
            assert response.headers["www-authenticate"].startswith("Bearer")
            assert response.json()["error"]["type"] == "UnauthorizedError"


@pytest.mark.parametrize("who", ["read", "write", "admin"])
def test_each_scope_reaches_exactly_its_routes(http: httpx.Client, server: Server, who: str) -> None:
    rank = {"read": 0, "write": 1, "admin": 2}
    for method, path in api_routes(http):
        need = rule_for(method, path).need
        response = call(http, method, path, auth(server.keys[who]))
        if need == OPEN or rank[who] >= rank[need]:
            assert response.status_code not in (401, 403), (who, method, path, response.text)
        else:
            assert response.status_code == 403, (who, method, path, response.text)
            assert response.json()["error"]["type"] == "ForbiddenError"


def test_a_key_bound_to_a_collection_gets_403_on_any_other(http: httpx.Client, server: Server) -> None:
    for method, path in api_routes(http):
        rule = rule_for(method, path)
        for who in ("read-alpha", "write-alpha", "admin-alpha"):
            response = call(http, method, path, auth(server.keys[who], "beta"))
            if rule.need == OPEN:
                assert response.status_code == 403, (who, method, path)
                continue
            assert response.status_code == 403, (who, method, path, response.text)
            assert not any(m in response.text for m in BETA_MARKERS)
        # Server-wide routes (creating or deleting collections, metrics) refuse bound keys even at home.
        if not rule.collection:
            assert call(http, method, path, auth(server.keys["admin-alpha"], "alpha")).status_code == 403


def test_tenant_a_never_sees_tenant_b(http: httpx.Client, server: Server) -> None:
    alpha = auth(server.keys["read-alpha"])  # no header: the key's own collection
    for mode in ("hybrid", "dense", "lexical"):
        hits = http.post("/v1/search", json={"query": "launch code vault", "mode": mode, "top_k": 10}, headers=alpha)
        assert hits.status_code == 200, hits.text
        assert [h["doc_id"] for h in hits.json()["results"]] == ["alpha-doc"], mode
    answer = http.post("/v1/ask", json={"question": "What is the launch code?"}, headers=alpha)
    assert answer.status_code == 200 and "ZEBRA" in answer.text
    chat = http.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "launch code?"}]},
                     headers=alpha)
    streamed = http.post("/v1/ask", json={"question": "launch code?", "stream": True}, headers=alpha)
    listed = http.get("/v1/collections", headers=alpha).json()["collections"]
    health = http.get("/v1/health", headers=alpha).json()
    deleted = http.delete("/v1/documents/beta-doc", headers=auth(server.keys["write-alpha"]))
    assert deleted.status_code == 404
    for response in (answer, chat, streamed):
        assert response.status_code == 200 and not any(m in response.text for m in BETA_MARKERS)
    assert [c["name"] for c in listed] == ["alpha"]
    assert health["collection"] == "alpha" and health["documents"] == 1
    # The 404 repeats the id the caller sent, nothing of B's.
    assert "OKAPI" not in deleted.text and "green vault" not in deleted.text
    # B's document is still there for B.
    beta = http.post("/v1/search", json={"query": "launch code"}, headers=auth(server.keys["read-beta"]))
    assert [h["doc_id"] for h in beta.json()["results"]] == ["beta-doc"]


def test_health_tells_anonymous_callers_nothing_about_collections(http: httpx.Client, server: Server) -> None:
    anonymous = http.get("/v1/health")
    assert anonymous.status_code == 200 and anonymous.json() == {"status": "ok", "upstream": "off"}
    full = http.get("/v1/health", headers=auth(server.keys["read"])).json()
    assert full["documents"] == 1 and full["collection"] == "default"


def test_collections_are_created_used_and_deleted_by_admins(http: httpx.Client, server: Server) -> None:
    admin = auth(server.keys["admin"])
    created = http.post("/v1/collections", json={"name": "gamma"}, headers=admin)
    assert created.status_code == 201 and created.json()["documents"] == 0
    assert http.post("/v1/collections", json={"name": "gamma"}, headers=admin).status_code == 409
    doc = {"id": "g1", "text": "Gamma rays are the most energetic photons."}
    added = http.post("/v1/documents", json={"documents": [doc]}, headers={**admin, "X-Collection": "gamma"})
    assert added.status_code == 200, added.text
    names = {c["name"]: c for c in http.get("/v1/collections", headers=admin).json()["collections"]}
    assert set(names) == {"default", "alpha", "beta", "gamma"} and names["gamma"]["chunks"] == 1
    assert names["gamma"]["embedding_model"] == "local/all-MiniLM-L6-v2"
    assert http.delete("/v1/collections/gamma", headers=admin).json() == {"deleted": "gamma"}
    gone = http.post("/v1/search", json={"query": "gamma"}, headers={**admin, "X-Collection": "gamma"})
    assert gone.status_code == 404 and gone.json()["error"]["type"] == "CollectionNotFoundError"
    assert not (server.root / "collections" / "gamma").exists()
    assert http.delete("/v1/collections/default", headers=admin).status_code == 400


@pytest.mark.parametrize("name", ["../etc", "..", "A", "a/b", "x" * 64, "-lead", "a b", "%2e%2e"])
def test_collection_names_are_checked_strictly(http: httpx.Client, server: Server, name: str) -> None:
    admin = auth(server.keys["admin"])
    response = http.post("/v1/search", json={"query": "x"}, headers={**admin, "X-Collection": name})
    assert response.status_code == 400 and response.json()["error"]["type"] == "ConfigError"
    assert http.post("/v1/collections", json={"name": name}, headers=admin).status_code == 422
    # Nothing was created, inside the root or beside it.
    assert {p.name for p in (server.root / "collections").iterdir()} == {"alpha", "beta"}
    assert sorted(p.name for p in server.root.parent.iterdir()) == ["files", "index"]


def test_http_adds_never_replace_file_documents_unless_asked(http: httpx.Client, server: Server) -> None:
    write = auth(server.keys["write"])
    doc_id = _file_doc_id(server)
    assert doc_id == "handbook.md"
    doc = {"id": doc_id, "text": "Planted text that must not replace the handbook."}
    refused = http.post("/v1/documents", json={"documents": [doc]}, headers=write)
    assert refused.status_code == 409 and refused.json()["error"]["type"] == "DocumentConflictError"
    assert "replace" in refused.json()["error"]["hint"]
    upload = {"files": (doc_id, b"# Planted\n\nAn upload that must not replace the handbook.", "text/markdown")}
    assert http.post("/v1/files", files=upload, headers=write).status_code == 409
    hits = http.post("/v1/search", json={"query": "office opens nine", "mode": "lexical"}, headers=write).json()
    assert "nine in the morning" in hits["results"][0]["text"]
    # Named explicitly, they replace it; an upload may then replace the upload.
    replaced = http.post("/v1/files", files=upload, data={"replace": "true"}, headers=write)
    assert replaced.status_code == 200 and replaced.json()["updated"] == 1
    assert http.post("/v1/files", files=upload, headers=write).json()["unchanged"] == 1
    replaced = http.post("/v1/documents", json={"documents": [doc], "replace": True}, headers=write)
    assert replaced.status_code == 200 and replaced.json()["updated"] == 1


def _file_doc_id(server: Server) -> str:
    from indexer.store import IndexDirectory

    with IndexDirectory(server.root).open_current() as snapshot:
        return next(i for i, r in snapshot.documents().items() if Path(r.source).is_absolute())


def test_keys_are_stored_hashed_and_revocation_applies_at_once(http: httpx.Client, server: Server) -> None:
    stored = (server.root / "keys.json").read_text()
    assert all(secret not in stored for secret in server.keys.values())
    assert (server.root / "keys.json").stat().st_mode & 0o077 == 0
    store = KeyStore(server.root / "keys.json")
    temporary = store.add("temporary", "read")
    assert http.post("/v1/search", json={"query": "office"}, headers=auth(temporary)).status_code == 200
    store.revoke("temporary")
    assert http.post("/v1/search", json={"query": "office"}, headers=auth(temporary)).status_code == 401


def test_every_response_carries_a_request_id(http: httpx.Client, server: Server) -> None:
    mine = http.get("/v1/health", headers={"X-Request-ID": "trace-42.a"})
    assert mine.headers["x-request-id"] == "trace-42.a"
    odd = http.get("/v1/health", headers={"X-Request-ID": "bad id\twith spaces" + "x" * 200})
    assert re.fullmatch(r"[0-9a-f]{32}", odd.headers["x-request-id"])
    refused = http.post("/v1/search", json={"query": "x"})
    assert refused.status_code == 401 and refused.headers["x-request-id"]


def test_metrics_move_when_requests_are_served(http: httpx.Client, server: Server) -> None:
    admin = auth(server.keys["admin"])

    def sample(text: str, name: str, **labels: str) -> float:
        for line in text.splitlines():
            if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    before = http.get("/metrics", headers=admin)
    assert before.status_code == 200 and before.headers["content-type"].startswith("text/plain")
    for _ in range(2):
        http.post("/v1/search", json={"query": "metrics moving query", "mode": "dense"}, headers=admin)
    http.post("/v1/search", json={"query": "x"})
    after = http.get("/metrics", headers=admin).text
    searches = dict(method="POST", route="/v1/search", status="200")
    assert sample(after, "iorag_http_requests_total", **searches) == sample(before.text, "iorag_http_requests_total", **searches) + 2
    assert sample(after, "iorag_http_requests_total", method="POST", route="/v1/search", status="401") >= 1
    assert sample(after, "iorag_http_request_duration_seconds_count", method="POST", route="/v1/search") >= 3
    assert sample(after, "iorag_collection_chunks", collection="beta") == 1
    assert sample(after, "iorag_query_cache_hits_total", collection="default") >= 1


def test_wrong_collection_header_on_open_server_is_still_checked(tmp_path: Path) -> None:
    with serve(create_app(Settings(index_dir=tmp_path / "none"))) as url, httpx.Client(base_url=url) as client:
        # No keys: every route is open (the server is on loopback), but names are still checked.
        assert client.get("/v1/health").json()["status"] == "empty"
        assert client.post("/v1/search", json={"query": "x"}, headers={"X-Collection": "../x"}).status_code == 400
        assert client.post("/v1/search", json={"query": "x"}, headers={"X-Collection": "nope"}).status_code == 404
        assert client.get("/metrics").status_code == 200
        assert json.loads(client.get("/v1/collections").text)["collections"][0]["name"] == "default"


def test_upstream_metrics_count_chat_calls_tokens_and_errors(tmp_path: Path) -> None:
    from indexer.catalog import DEFAULT_REMOTE_CHAT_MODEL

    from ..fakeapi import FakeServer

    root = tmp_path / "index"
    build_indexer(Settings(index_dir=root)).add_documents([Document(id="q", text="Quotas refresh every day.")])
    with FakeServer() as fake:
        settings = Settings(index_dir=root, api_key=fake.config.api_key, base_url=fake.base_url, reload_interval=0,
                            backoff_base=0.01)
        with serve(create_app(settings)) as url, httpx.Client(base_url=url, timeout=60) as http:
            answered = http.post("/v1/ask", json={"question": "When do quotas refresh?"})
            refused = http.post("/v1/ask", json={"question": "When?", "model": "acme/Premium-405B"})
            text = http.get("/metrics").text
    assert answered.status_code == 200 and refused.status_code == 402
    usage = answered.json()["usage"]

    def value(line_start: str) -> float:
        return float(next(line for line in text.splitlines() if line.startswith(line_start)).rsplit(" ", 1)[1])

    llama = f'model="{DEFAULT_REMOTE_CHAT_MODEL}"'
    assert value(f'iorag_upstream_requests_total{{{llama},outcome="ok"}}') == 1
    assert value(f'iorag_upstream_tokens_total{{kind="prompt",{llama}}}') == usage["prompt_tokens"]
    assert value(f'iorag_upstream_tokens_total{{kind="completion",{llama}}}') == usage["completion_tokens"]
    assert value('iorag_upstream_errors_total{error="PaymentRequiredError",model="acme/Premium-405B"}') == 1
    # The upstream key never reaches the metrics.
    assert fake.config.api_key not in text


def test_an_unreadable_key_file_fails_closed(tmp_path: Path) -> None:
    settings = Settings(index_dir=tmp_path / "index")
    settings.keys_path.parent.mkdir(parents=True)
    settings.keys_path.write_text("{not json")
    with serve(create_app(settings)) as url, httpx.Client(base_url=url) as http:
        response = http.post("/v1/search", json={"query": "x"})
        assert response.status_code == 503 and str(settings.keys_path) not in response.text
        assert http.get("/v1/health").status_code == 503
