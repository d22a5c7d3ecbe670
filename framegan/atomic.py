"""All-or-nothing file output: write under a temp name beside the target, then rename.

A reader (or a crash, or ``kill -9``) sees either the old file or the complete new one, never a
half-written one: ``os.replace`` within one directory is atomic on POSIX. After a power loss too:
the data is fsynced before the rename, and the directory (which holds the rename) after it.

An output that cannot be written is an ``OSError`` naming the path the user gave and what is
wrong with it (never the hidden temp name, never a bare "File exists"): ``cli.run_main`` prints
it as one line. ``output_dir`` checks a command's output directory before the work, not after.
"""
from __future__ import annotations

import contextlib
import errno
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


def _file_in_the_way(directory: Path) -> Path | None:
    """The first of ``directory`` and its parents that exists but is not a directory, if any."""
    for p in (directory, *directory.parents):
        if p.exists():
            return None if p.is_dir() else p
    return None


def _missing(directory: Path) -> list[Path]:
    """``directory`` and those of its parents that do not exist yet, deepest first."""
    missing = []
    for p in (directory, *directory.parents):
        if p.exists():
            break
        missing.append(p)
    return missing


def make_dir(directory: str | Path, target: str | Path | None = None) -> None:
    """``mkdir -p directory``; on failure an ``OSError`` that names ``target`` (the path the user
    gave: the file to be written there, or the directory itself) and says what is wrong."""
    directory = Path(directory)
    target = Path(target or directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        blocker = _file_in_the_way(directory)
        if blocker == target:
            why = "is a file, not a directory"
        elif blocker is not None:
            why = f"cannot write there: {blocker} is a file, not a directory"
        else:
            why = f"cannot create the directory {directory} ({e.strerror or e})"
        raise OSError(e.errno or errno.ENOTDIR, why, str(target)) from None


def _cannot_write(e: OSError, directory: Path, target: Path) -> OSError:
    return OSError(e.errno, f"cannot write in {directory} ({e.strerror or e})", str(target))


@contextlib.contextmanager
def output_dir(directory: str | Path, target: str | Path | None = None):
    """Create ``directory`` and check that a file can be written in it, now: a command whose
    output cannot be written then fails before its work, not after it. Errors name ``target``
    (default: the directory). On any error inside, the directories created here are removed
    again if still empty, so a failed command leaves no trace."""
    directory = Path(directory)
    target = Path(target or directory)
    created = _missing(directory)
    make_dir(directory, target)
    try:
        try:
            fd, probe = tempfile.mkstemp(prefix=".write-check.", dir=directory)
        except OSError as e:
            raise _cannot_write(e, directory, target) from None
        os.close(fd)
        os.unlink(probe)
        yield directory
    except BaseException:
        for d in created:
            try:
                d.rmdir()
            except OSError:  # not empty (or gone): it is not ours to remove
                break
        raise


@contextlib.contextmanager
def atomic_path(path: str | Path):
    """Yield a temp path (same directory and suffix) to write; on success it is fsynced and
    replaces ``path`` with the usual permissions (mkstemp's 0600 would otherwise survive the
    rename), then the directory is fsynced; on error it is removed. An ``OSError`` of the temp
    file (disk full, say) is re-raised naming ``path``."""
    path = Path(path)
    make_dir(path.parent, path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    except OSError as e:
        raise _cannot_write(e, path.parent, path) from None
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        _fsync(tmp)
        try:
            os.replace(tmp, path)
        except OSError as e:
            why = "is a directory" if path.is_dir() else e.strerror or str(e)
            raise OSError(e.errno, why, str(path)) from None
        _fsync(path.parent)
    except OSError as e:
        if e.filename in (tmp, Path(tmp)):  # the user knows --out, not the hidden temp name
            raise OSError(e.errno, e.strerror, str(path)) from None
        raise
    finally:
        Path(tmp).unlink(missing_ok=True)
