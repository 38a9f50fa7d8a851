"""API keys for the server: scopes, an optional collection, only a hash on disk.

A secret is 32 random bytes (`secrets.token_urlsafe`), shown once by `iorag keys
add`. With that much entropy a plain SHA-256 is enough to store (no password
stretching needed), and lookups compare hashes in constant time. The file is
JSON, replaced atomically (temp file, fsync, rename) under a lock, mode 0600:

    {"keys": [{"name", "hash", "scope", "collection", "created"}]}
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import filelock

from indexer.errors import ConfigError

from .collections import check_name

Scope = Literal["read", "write", "admin"]
SCOPES: tuple[Scope, ...] = ("read", "write", "admin")
#: Each scope grants the ones before it.
RANK = {scope: rank for rank, scope in enumerate(SCOPES)}
#: Secrets start with this, so a leaked one is easy to recognise and to scan for.
PREFIX = "iorag_"
KEY_NAME_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-@"


class KeyFileError(ConfigError):
    """The key file exists but cannot be read: a server refuses every keyed route until it is mended."""


@dataclass(frozen=True)
class ApiKey:
    """One key as stored (never the secret)."""

    name: str
    hash: str
    scope: Scope
    #: The only collection the key may use; None: every collection.
    collection: str | None = None
    created: float = 0.0

    def grants(self, scope: Scope) -> bool:
        return RANK[self.scope] >= RANK[scope]


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


class KeyStore:
    """The key file: add, list, revoke from the CLI; `find` from the server (re-read when the file changes)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._seen: tuple[int, int] | None = None
        self._keys: tuple[ApiKey, ...] = ()

    # -- reading -----------------------------------------------------------------

    def keys(self) -> tuple[ApiKey, ...]:
        """Every key; the file is read again only when its mtime or size changed."""
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            self._seen, self._keys = None, ()
            return ()
        seen = (stat.st_mtime_ns, stat.st_size)
        if seen != self._seen:
            self._keys = self._read()
            self._seen = seen
        return self._keys

    def _read(self) -> tuple[ApiKey, ...]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            return tuple(ApiKey(**entry) for entry in data["keys"])
        except FileNotFoundError:
            return ()
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise KeyFileError(f"{self.path}: unreadable key file: {exc}") from exc

    def find(self, secret: str) -> ApiKey | None:
        """The key whose hash matches `secret`, comparing every stored hash in constant time."""
        digest = hash_secret(secret)
        found = None
        for key in self.keys():
            if hmac.compare_digest(key.hash, digest):
                found = key
        return found

    def any(self) -> bool:
        return bool(self.keys())

    # -- writing -----------------------------------------------------------------

    def add(self, name: str, scope: str, collection: str | None = None) -> str:
        """Store a new key and return its secret (the only time it exists outside the caller).

        Raises:
            ConfigError: a bad name, scope or collection, or a name in use.
        """
        if not name or len(name) > 64 or any(c not in KEY_NAME_CHARS for c in name):
            raise ConfigError(f"invalid key name {name[:80]!r}", hint="use 1-64 letters, digits, '.', '_', '-' or '@'")
        if scope not in SCOPES:
            raise ConfigError(f"invalid scope {scope!r}", hint="use read, write or admin")
        if collection is not None:
            check_name(collection)
        secret = PREFIX + secrets.token_urlsafe(32)
        with self._locked():
            keys = list(self._read())
            if any(k.name == name for k in keys):
                raise ConfigError(f"a key named {name!r} exists", hint=f"revoke it first: iorag keys revoke {name}")
            keys.append(ApiKey(name, hash_secret(secret), scope, collection, round(time.time(), 3)))  # type: ignore[arg-type]
            self._write(keys)
        return secret

    def revoke(self, name: str) -> None:
        """Remove the key named `name`.

        Raises:
            ConfigError: no such key.
        """
        with self._locked():
            keys = list(self._read())
            kept = [k for k in keys if k.name != name]
            if len(kept) == len(keys):
                raise ConfigError(f"no key named {name!r}", hint="`iorag keys list` shows them")
            self._write(kept)

    def _locked(self) -> filelock.BaseFileLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        return filelock.FileLock(self.path.with_name(self.path.name + ".lock"), timeout=10, thread_local=False)

    def _write(self, keys: list[ApiKey]) -> None:
        payload = json.dumps({"keys": [asdict(k) for k in keys]}, indent=2).encode()
        fd, tmp = tempfile.mkstemp(prefix=".keys-", dir=self.path.parent)
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "wb") as file:
                file.write(payload)
                file.flush()
                os.fsync(file.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        dir_fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
