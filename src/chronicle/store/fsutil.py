"""Small durable-file helpers: locks, fsync of files and directories."""

from __future__ import annotations

import errno
import fcntl
import os
import threading
import weakref
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


class KeptOpenFile:
    """A descriptor kept open between uses and dropped in a forked child (whose
    copy would share the parent's open file description, and with it an flock)."""

    _open: weakref.WeakSet[KeptOpenFile] = weakref.WeakSet()

    def __init__(self, path: Path):
        self.path = path
        self._fd: int | None = None

    def _descriptor(self) -> int:
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            KeptOpenFile._open.add(self)
        return self._fd

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    @classmethod
    def _forget_all(cls) -> None:
        for f in list(cls._open):
            f.close()  # the parent's lock, if it holds one, stays with the parent's copy
        cls._open = weakref.WeakSet()


os.register_at_fork(after_in_child=KeptOpenFile._forget_all)


class FileLock(KeptOpenFile):
    """An exclusive flock on ``path``, used as ``with lock:``. Not re-entrant.

    Opening the lock file on every use cost two syscalls per append, so the
    descriptor stays open; a thread lock keeps threads of one process from
    both holding it through the one descriptor.
    """

    def __init__(self, path: Path):
        super().__init__(path)
        self._threads = threading.Lock()

    def __enter__(self) -> None:
        self._threads.acquire()
        try:
            fcntl.flock(self._descriptor(), fcntl.LOCK_EX)
        except BaseException:
            self._threads.release()
            raise

    def __exit__(self, *exc: object) -> None:
        try:
            fcntl.flock(self._fd, fcntl.LOCK_UN)  # type: ignore[arg-type]
        finally:
            self._threads.release()


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
