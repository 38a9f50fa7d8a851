"""Fixtures for the indexer tests: the fake API on loopback (one per module); Milvus Lite and a Milvus server."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pytest

from indexer.store import IndexDirectory
from indexer.store.backends import DEFAULT_MILVUS_FILE, DenseTarget
from tests.fakeapi import FakeServer
from tests.milvus_server import MilvusServerProcess, MilvusStartError


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


# -- Milvus: Milvus Lite (a file) and a real Milvus server process -----------------


@pytest.fixture(scope="session")
def milvus_server(
    tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config
) -> Iterator[MilvusServerProcess]:
    """One Milvus 2.3 standalone server for the session, on free loopback ports, with auth on.

    A server that does not start is an error of every test that needs it (with its log's
    tail), never a skip. Its binaries are unpacked once into pytest's cache directory.
    """
    cache = getattr(pytestconfig, "cache", None)
    binaries = Path(cache.mkdir("milvus-server")) if cache else tmp_path_factory.mktemp("milvus-bin")
    # Free ports are picked before the server binds them, so another process may take one
    # meanwhile: a server that fails to come up is started again on new ports, twice at most.
    for attempt in range(3):
        server = MilvusServerProcess(tmp_path_factory.mktemp("milvus-server"), binaries)
        try:
            server.start()
            break
        except MilvusStartError:
            if attempt == 2:
                raise
    try:
        yield server
    finally:
        server.stop()


@dataclass(frozen=True)
class MilvusSetup:
    """Where a test's Milvus collections go: a Lite file in the index directory, or the server."""

    kind: str
    uri: str | None = None
    token: str | None = None

    def target(self) -> DenseTarget:
        return DenseTarget("milvus", self.uri)

    def directory(self, root: Path) -> IndexDirectory:
        return IndexDirectory(root, milvus_token=self.token)

    def connect_uri(self, root: Path) -> str:
        return self.uri or str(root / DEFAULT_MILVUS_FILE)

    def collections(self, root: Path) -> set[str]:
        """The `iorag_` collections where `root`'s index keeps vectors (a server's are shared)."""
        from indexer.store.dense.milvus import list_collections

        return set(list_collections(self.connect_uri(root), "iorag_", self.token))

    def env(self) -> dict[str, str]:
        """IORAG_ variables that point a CLI run here."""
        return {"IORAG_MILVUS_URI": self.uri, "IORAG_MILVUS_TOKEN": self.token or ""} if self.uri else {}


@pytest.fixture(params=["lite", "server"])
def milvus(request: pytest.FixtureRequest) -> MilvusSetup:
    """Each Milvus test runs twice: on Milvus Lite and on the real server."""
    if request.param == "lite":
        return MilvusSetup("lite")
    server: MilvusServerProcess = request.getfixturevalue("milvus_server")
    return MilvusSetup("server", server.uri, server.token)
