"""Crash-safe file updates and inter-process locking.

State changes are written to a temporary file in the same directory, fsynced,
then renamed over the old file (and the directory fsynced), so a kill -9 at any
moment leaves either the old or the new content.  Commands that change a
machine hold an exclusive ``flock`` on the machine's lock file for their whole
duration, so concurrent commands serialise.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path | str, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically (temp file, fsync, rename)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


@contextlib.contextmanager
def locked(lock_path: Path | str, exclusive: bool = True) -> Iterator[None]:
    """Hold an flock on ``lock_path`` (created if missing) for the block."""
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


@contextlib.contextmanager
def atomic_open(path: Path | str) -> Iterator:
    """A binary file that replaces ``path`` atomically when the block ends
    normally (temp file in the same directory, fsync, rename, directory
    fsync); on an exception the temp file is removed and ``path`` is kept."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def stale_temp_files(directory: Path | str) -> list[Path]:
    """Temporary files ``atomic_write``/``atomic_open`` leave behind when the
    writer is killed between creating and renaming them (``.NAME.XXXX.tmp``).
    Only call this while holding the lock that serialises the writers."""
    d = Path(directory)
    try:
        return [p for p in d.iterdir() if p.name.startswith(".") and p.name.endswith(".tmp") and p.is_file()]
    except OSError:
        return []
