"""All-or-nothing file output: write under a temp name beside the target, then rename.

A reader (or a crash, or ``kill -9``) sees either the old file or the complete new one, never a
half-written one: ``os.replace`` within one directory is atomic on POSIX. After a power loss too:
the data is fsynced before the rename, and the directory (which holds the rename) after it.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync(path: str | Path) -> None:
    """Flush a file's (or a directory's entries') data to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | Path):
    """Yield a temp path (same directory and suffix) to write; on success it is fsynced and
    replaces ``path`` with the usual permissions (mkstemp's 0600 would otherwise survive the
    rename), then the directory is fsynced; on error it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        _fsync(tmp)
        os.replace(tmp, path)
        _fsync(path.parent)
    finally:
        Path(tmp).unlink(missing_ok=True)
