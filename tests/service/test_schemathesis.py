"""Fuzz the HTTP API from its own /openapi.json (schemathesis, a bounded number of examples).

The server runs for real on loopback with keys; every operation is called
with an admin key (and, by the `ignored_auth` check, without one). No answer
may be a server error, have a status the spec does not document, or differ
from its documented content type and schema.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode, checks

from indexer.models import Document
from service.api import create_app
from service.config import Settings
from service.indexing import build_indexer
from service.keys import KeyStore

from ..serving import serve

#: Examples per operation: enough to reach every documented status, small enough for CI.
EXAMPLES = 12
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
    checks.ignored_auth,
]


@pytest.fixture(scope="module")
def admin_key(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    root = tmp_path_factory.mktemp("fuzz") / "index"
    base = Settings(index_dir=root, reload_interval=0, rate_limit=0)
    docs = [Document(id=f"doc-{i}", text=f"Document {i} talks about topic number {i}.", source="api") for i in range(5)]
    build_indexer(base).add_documents(docs)
    secret = KeyStore(base.keys_path).add("fuzzer", "admin")
    with serve(create_app(base)) as url:
        yield url, secret


def test_the_api_answers_as_documented(admin_key: tuple[str, str]) -> None:
    url, secret = admin_key
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 10
    for operation, mode in itertools.product(operations, (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)):

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True,
                  database=None)
        def fuzz(case: schemathesis.Case) -> None:
            case.call_and_validate(base_url=url, headers={"Authorization": f"Bearer {secret}"}, checks=CHECKS)

        fuzz()


def test_the_fuzzed_index_is_still_there(admin_key: tuple[str, str], tmp_path: Path) -> None:
    import httpx

    url, secret = admin_key
    health = httpx.get(f"{url}/v1/health", headers={"Authorization": f"Bearer {secret}"}).json()
    assert health["status"] == "ok"
