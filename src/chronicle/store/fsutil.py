"""Small durable-file helpers: locks, fsync of files and directories."""

from __future__ import annotations

import errno
import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from chronicle.store.errors import StorageFull

_FULL = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT}


@contextmanager
def locked(path: Path, *, shared: bool = False) -> Iterator[None]:
    """Hold an flock on ``path`` (released by the kernel if the process dies)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def is_full(exc: OSError) -> bool:
    return exc.errno in _FULL


def full_error(path: Path, exc: OSError) -> StorageFull:
    return StorageFull(f"{path}: no space to write ({os.strerror(exc.errno or 0)}); the log is unchanged")


def write_durably(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temp file, fsync, rename, fsync dir."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        if is_full(exc):
            raise full_error(path, exc) from None
        raise
    fsync_dir(path.parent)


def pwrite_all(fd: int, data: bytes, offset: int) -> None:
    """pwrite until done: a size limit makes the kernel write short, then fail."""
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, offset)
        if n == 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        view = view[n:]
        offset += n
