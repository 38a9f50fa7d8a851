"""Collections: isolated indexes under one root, and the open services of a server.

    <index_dir>/                  the `default` collection (the layout iorag always had)
    <index_dir>/collections/NAME  any other collection: its own documents, model, snapshots

Each collection is a whole index directory, so nothing (chunks, embedding
cache, write lock) is shared between two of them.
"""

from __future__ import annotations

import asyncio
import logging
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from indexer.errors import ConfigError, IndexLockedError
from indexer.store import IndexDirectory

from .errors import CollectionExistsError, CollectionNotFoundError

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from .config import Settings
    from .rag import RagService

DEFAULT_COLLECTION = "default"
#: Lower-case letters, digits, `-` and `_`, starting with a letter or digit: safe as a
#: directory name everywhere, never `.`, `..` or a path.
NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
SUBDIR = "collections"


def check_name(name: str) -> str:
    """`name` if it is a valid collection name.

    Raises:
        ConfigError: anything else (it names the rule).
    """
    if not isinstance(name, str) or not NAME.fullmatch(name):
        shown = name if isinstance(name, str) and len(name) <= 80 else "(too long)"
        raise ConfigError(
            f"invalid collection name {shown!r}",
            hint="use 1-63 lower-case letters, digits, '-' or '_', starting with a letter or digit",
        )
    return name


def collection_dir(root: Path, name: str) -> Path:
    """Where collection `name` lives under the index root."""
    check_name(name)
    return Path(root) if name == DEFAULT_COLLECTION else Path(root) / SUBDIR / name


@dataclass(frozen=True)
class CollectionInfo:
    name: str
    documents: int
    chunks: int
    embedding_model: str | None


def collection_names(root: Path) -> list[str]:
    """`default` and every created collection, sorted."""
    names = {DEFAULT_COLLECTION}
    folder = Path(root) / SUBDIR
    if folder.is_dir():
        names.update(p.name for p in folder.iterdir() if p.is_dir() and NAME.fullmatch(p.name))
    return sorted(names)


def exists(root: Path, name: str) -> bool:
    return name == DEFAULT_COLLECTION or collection_dir(root, name).is_dir()


def describe(root: Path, name: str) -> CollectionInfo:
    """Document and chunk counts from the collection's published manifest (0 before the first)."""
    # The manifest alone: opening the snapshot would load its vectors.
    manifest = IndexDirectory(collection_dir(root, name)).current_manifest()
    if manifest is None:
        return CollectionInfo(name, 0, 0, None)
    return CollectionInfo(name, manifest.documents, manifest.chunks, manifest.embedding_model)


def create(root: Path, name: str) -> Path:
    """Make an empty collection.

    Raises:
        ConfigError: a bad name. CollectionExistsError: it is there already.
    """
    path = collection_dir(root, name)
    if name == DEFAULT_COLLECTION or path.exists():
        raise CollectionExistsError(f"collection {name!r} exists already")
    path.mkdir(parents=True)
    return path


def delete(root: Path, name: str, milvus_token: str | None = None) -> None:
    """Remove a collection and its whole index, once no writer holds it; vectors kept on a Milvus
    server are dropped there too (a failure is logged: the collection is gone either way).

    Raises:
        ConfigError: `default` (it is the index root; delete files by hand if you mean it).
        CollectionNotFoundError: no such collection. IndexLockedError: a write is in progress.
    """
    if name == DEFAULT_COLLECTION:
        raise ConfigError("the default collection cannot be deleted", hint="delete its documents instead")
    path = collection_dir(root, name)
    if not path.is_dir():
        raise CollectionNotFoundError(f"no collection {name!r}")
    import filelock

    # Holding the write lock while renaming keeps a running `iorag index` from writing into a ghost.
    lock = filelock.FileLock(path / "write.lock", timeout=0, thread_local=False)
    try:
        lock.acquire()
    except filelock.Timeout as exc:
        raise IndexLockedError(f"collection {name!r} is being written; try again when it is done") from exc
    try:
        left = IndexDirectory(path, milvus_token=milvus_token).drop_external_storage()
        if left:
            log.warning("collection %r: could not drop its Milvus collections %s; drop them by hand", name, left)
        doomed = path.with_name(f".deleting-{name}")
        shutil.rmtree(doomed, ignore_errors=True)
        path.rename(doomed)
    finally:
        lock.release()
    shutil.rmtree(doomed, ignore_errors=True)


class OpenCollections:
    """The services a server has opened, one per collection, built on first use and closed at shutdown."""

    def __init__(self, settings: Settings, factory: Callable[[Settings], RagService] | None = None) -> None:
        self.settings = settings
        self._factory = factory
        self._services: dict[str, RagService] = {}
        self._lock = asyncio.Lock()

    @property
    def root(self) -> Path:
        return self.settings.index_dir

    def put(self, name: str, service: RagService) -> None:
        """Use a service built elsewhere for `name` (the library's `create_app(service=...)`)."""
        self._services[check_name(name)] = service

    async def get(self, name: str) -> RagService:
        """The service of collection `name`.

        Raises:
            ConfigError: a bad name. CollectionNotFoundError: never created.
        """
        service = self._services.get(name)
        if service is not None:
            return service
        if not exists(self.root, check_name(name)):
            raise CollectionNotFoundError(
                f"no collection {name!r}", hint="an admin creates it with POST /v1/collections"
            )
        async with self._lock:
            service = self._services.get(name)
            if service is None:
                service = self._build(self.settings.for_collection(name))
                self._services[name] = service
        return service

    def _build(self, settings: Settings) -> RagService:
        if self._factory is not None:
            return self._factory(settings)
        from .rag import RagService

        return RagService(settings)

    def opened(self) -> dict[str, RagService]:
        return dict(self._services)

    async def drop(self, name: str) -> None:
        """Close the service of `name` (before its files go)."""
        async with self._lock:
            service = self._services.pop(name, None)
        if service is not None:
            await service.aclose()

    async def aclose(self) -> None:
        async with self._lock:
            services, self._services = list(self._services.values()), {}
        for service in services:
            await service.aclose()
