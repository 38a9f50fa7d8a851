"""Durable file operations: fsync, write-once files, tree removal."""

from __future__ import annotations

import os
import shutil
from pathlib import Path


def fsync_path(path: Path, *, directory: bool = False) -> None:
    """Flush a file, or a directory's entries, to disk."""
    flags = os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if directory else 0)
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    except OSError:
        # Some filesystems refuse fsync on directories (EINVAL); the rename is still atomic there.
        if not directory:
            raise
    finally:
        os.close(fd)


def write_durably(path: Path, data: bytes) -> None:
    """Create `path` (it must not exist) with `data`, fsynced before returning."""
    with open(path, "xb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def remove_tree(path: Path) -> None:
    """Delete a directory tree, ignoring what is already gone (a reader may hold files open; POSIX allows it)."""
    shutil.rmtree(path, ignore_errors=True)
