"""Fixtures for the client and embedder tests: the fake API on loopback, one per module."""

from __future__ import annotations

from typing import Any

import pytest

from tests.fakeapi import FakeServer


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def server() -> Any:
    with FakeServer() as running:
        yield running


@pytest.fixture
def fake(server: FakeServer) -> FakeServer:
    server.reset()
    return server
