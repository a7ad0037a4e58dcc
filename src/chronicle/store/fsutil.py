"""Small durable-file helpers: locks, fsync of files and directories."""

from __future__ import annotations

import errno
import fcntl
import os
import signal
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from chronicle.store.errors import StorageFull, StoreError

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
            fd = self._descriptor()
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                _wait_for_lock(fd, self.path)
        except BaseException:
            self._threads.release()
            raise

    def __exit__(self, *exc: object) -> None:
        try:
            fcntl.flock(self._fd, fcntl.LOCK_UN)  # type: ignore[arg-type]
        finally:
            self._threads.release()


class LockTimeout(StoreError):
    """A lock stayed held longer than the caller would wait."""


class LockWaits:
    """What a wait for a lock held by another process does (set by the CLI for each command):
    after ``notice_after`` seconds, ``notice`` is called with a sentence naming the
    holder; after ``give_up_after`` seconds (None: never), LockTimeout is raised.
    The main thread is timed by SIGALRM; another thread (a command the daemon
    serves: ``chronicle.served``) asks again every few hundredths of a second."""

    notice_after: float = 1.0
    give_up_after: float | None = None
    notice: Callable[[str], None] | None = None


def _wait_for_lock(fd: int, path: Path) -> None:
    if LockWaits.notice is None and LockWaits.give_up_after is None:
        fcntl.flock(fd, fcntl.LOCK_EX)
        return
    started = time.monotonic()
    told = False

    def tick(signum: int | None = None, frame: object = None) -> None:
        nonlocal told
        waited = time.monotonic() - started
        if LockWaits.give_up_after is not None and waited >= LockWaits.give_up_after:
            raise LockTimeout(f"{path}: still held by {lock_holder(path)} after {waited:.1f}s; gave up (--wait)")
        if not told and LockWaits.notice is not None and waited >= LockWaits.notice_after:
            told = True
            LockWaits.notice(f"waiting for {path}: held by {lock_holder(path)} "
                             f"(a stopped or busy process; --wait SECONDS gives up)")

    if threading.current_thread() is not threading.main_thread():  # no signals here: ask again
        pause = 0.005
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                tick()
                time.sleep(pause)
                pause = min(pause * 2, 0.05)

    first = LockWaits.notice_after if LockWaits.give_up_after is None else min(LockWaits.notice_after, LockWaits.give_up_after)
    previous = signal.signal(signal.SIGALRM, tick)
    signal.setitimer(signal.ITIMER_REAL, max(first, 0.001), 0.1)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # retried after each tick (PEP 475) unless it raised
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def lock_holder(path: Path) -> str:
    """Which process holds an flock on ``path`` (from /proc/locks), as words."""
    try:
        ino = os.stat(path).st_ino
        with open("/proc/locks") as fh:
            for line in fh:
                parts = line.split()
                if len(parts) > 5 and parts[1] == "FLOCK" and parts[5].rsplit(":", 1)[-1] == str(ino):
                    return f"pid {parts[4]}"
    except OSError:
        pass
    return "another process"


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
