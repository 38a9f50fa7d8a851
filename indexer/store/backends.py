"""Choosing where vectors go (`DenseTarget`), the manifest's `dense` entry, Milvus URIs.

A snapshot's vectors live either in its own segment files (FAISS, the default) or in
its own Milvus collection (see `dense/`). The manifest's `dense` entry says which, so a reader
opens whatever the snapshot was written with and needs no setting:

    {"backend": "faiss"}
    {"backend": "milvus", "uri": "milvus.db", "collection": "iorag_<snapshot id>",
     "index": {"type": "FLAT"}}
    {"backend": "milvus", "uri": "http://host:19530", "collection": "iorag_<snapshot id>",
     "index": {"type": "HNSW", "M": 16, "efConstruction": 200, "ef": 128}}

A Milvus Lite file inside the index directory is stored relative to it (the
directory stays movable); a server URI (`http://host:19530`) is kept as given.
Credentials never go in the manifest: a server's token is a setting
(`IORAG_MILVUS_TOKEN`), and a URI carrying a password is refused. An entry
without `index` (written before there was a choice) is FLAT.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Mapping

from ..errors import ConfigError, CorruptIndexError
from .dense.base import DenseIndex

BACKENDS = ("faiss", "milvus")
#: The Milvus Lite file used when no URI is given, relative to the index directory.
DEFAULT_MILVUS_FILE = "milvus.db"
#: Written first when a Milvus collection is made: names it so an unfinished build can be cleaned up.
DENSE_MARKER = "dense.json"
_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*://", re.IGNORECASE)
#: `scheme://user[:password]@host`: credentials inside a URI, which the manifest would keep.
_USERINFO = re.compile(r"^[a-z][a-z0-9+.-]*://[^/@]*@", re.IGNORECASE)


@dataclass(frozen=True)
class DenseTarget:
    """Where a writer puts a new snapshot's vectors.

    Args:
        backend: `faiss` or `milvus`.
        milvus_uri: Milvus Lite file (`.db`) or server URI; None: `<index dir>/milvus.db`.
    """

    backend: str = "faiss"
    milvus_uri: str | None = None

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ConfigError(f"unknown vector backend {self.backend!r}", hint="use faiss or milvus")
        if self.milvus_uri is not None and _USERINFO.match(self.milvus_uri):
            # Not echoed: the URI holds a secret.
            raise ConfigError(
                "the Milvus URI carries credentials, which the index's manifest would keep",
                hint="give the URI without them and the credentials in IORAG_MILVUS_TOKEN (user:password)",
            )
        if self.milvus_uri is not None and not _SCHEME.match(self.milvus_uri):
            if not self.milvus_uri.endswith(".db"):
                raise ConfigError(
                    f"Milvus URI {self.milvus_uri!r} is neither a server URI nor a Milvus Lite file",
                    hint="give http://host:19530 or a path ending in .db",
                )

    def stored_uri(self, root: Path) -> str:
        """The URI as the manifest keeps it: relative when the Lite file is inside `root`."""
        uri = self.milvus_uri or DEFAULT_MILVUS_FILE
        if _SCHEME.match(uri):
            return uri
        path = Path(uri)
        if not path.is_absolute():
            # A relative --milvus-uri means relative to where the user stands, like --index.
            path = Path.cwd() / path if self.milvus_uri else root / path
        try:
            return path.resolve().relative_to(Path(root).resolve()).as_posix()
        except ValueError:
            return str(path.resolve())


def resolve_uri(stored: str, root: Path) -> str:
    """The URI to connect to: a server URI as is, a Lite file against the index directory."""
    if _SCHEME.match(stored):
        return stored
    return str(Path(root) / stored)


def is_local(uri: str) -> bool:
    """Whether a URI names a Milvus Lite file (not a server)."""
    return not _SCHEME.match(uri)


def collection_name(snapshot_id: str) -> str:
    """One collection per snapshot; Milvus names allow letters, digits and underscores."""
    return "iorag_" + re.sub(r"[^0-9A-Za-z_]", "_", snapshot_id)


def load_milvus() -> ModuleType:
    """Import the Milvus backend (and pymilvus) on first use.

    Raises:
        ConfigError: pymilvus or milvus-lite is not installed.
    """
    from .dense.factory import load_milvus as load

    return load()  # type: ignore[no-any-return]


def dense_entry(data: Mapping[str, Any], where: Path) -> dict[str, Any]:
    """The manifest's `dense` entry, checked; snapshots written before it existed are FAISS.

    Raises:
        CorruptIndexError: an unknown backend or a Milvus entry without its URI or collection.
    """
    entry = data.get("dense", {"backend": "faiss"})
    if not isinstance(entry, dict) or entry.get("backend") not in BACKENDS:
        raise CorruptIndexError(f"{where}: manifest field 'dense' names no known backend ({BACKENDS})")
    if entry["backend"] == "milvus":
        for key in ("uri", "collection"):
            if not isinstance(entry.get(key), str) or not entry[key]:
                raise CorruptIndexError(f"{where}: manifest field 'dense' lacks the Milvus {key}")
        index = entry.get("index", {"type": "FLAT"})
        if not isinstance(index, dict) or not isinstance(index.get("type"), str):
            raise CorruptIndexError(f"{where}: manifest field 'dense' has no Milvus index type")
    return dict(entry)


__all__ = ["BACKENDS", "DENSE_MARKER", "DenseIndex", "DenseTarget", "collection_name", "dense_entry",
           "is_local", "load_milvus", "resolve_uri"]
