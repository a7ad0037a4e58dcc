"""Where a log's committed state lives: a commit log and immutable blobs.

A log's committed state is two things, and a backend stores only those:

- **the commit log**: the MANIFEST, one JSON line per commit (see
  ``manifest``). ``commit(line, expected_size)`` appends a line only if the
  committed bytes are still ``expected_size`` long (compare-and-append, the
  one atomic operation the protocol needs: two writers racing for the same
  next entry, one wins and the other gets ``CommitConflict``). Readers see
  only whole committed lines: an append cut short is never committed.
- **immutable blobs**: the segment files a commit names. ``put`` publishes
  finished files, all at once or (after a crash) some; each is whole and
  durable before ``put`` returns, and a commit names only blobs already put,
  so a commit never points at a missing or partial file. A blob no commit
  names yet (an attempt that died before its commit) may be put again; one a
  commit names never is, since the log names blobs after the seqs they hold,
  which lie above the committed head until their commit lands.
  ``remove`` deletes blobs no commit names any more: only a redaction makes
  such blobs (the files it replaced, see ``redaction``), and only it removes
  them, after its commit.

What a commit *means* (hash chains, seqs, which files) is ``manifest``'s and
``log``'s business: as in delta-rs, the commit protocol is kept apart from
the store of bytes. The WAL is not here: it is each writer's local journal,
sealed into blobs and commits.

``LocalStorage`` is the backend on a local filesystem. Every backend passes
the contract suite in ``tests/contract/``.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import Protocol

from chronicle.store.errors import StoreError
from chronicle.store.fsutil import fsync_dir, full_error, is_full, pwrite_all


class CommitConflict(StoreError):
    """The commit log grew since the writer read it: read again, then retry or give up."""

    def __init__(self, expected: int, actual: int):
        super().__init__(f"commit refused: the commit log holds {actual:,} committed bytes, not the {expected:,} "
                         "this commit was made against (another writer committed first)")
        self.expected, self.actual = expected, actual


class Storage(Protocol):
    """The committed state of one log (see the module's docstring)."""

    #: A local folder where a writer prepares blob files before ``put``.
    staging_dir: Path

    def read_commits(self) -> bytes:
        """The commit log's bytes (a last line without its newline was never committed)."""

    def commits_stamp(self) -> tuple[int, int]:
        """A cheap value that changes whenever a commit lands (writers ask on every append)."""

    def commit(self, line: bytes, expected_size: int) -> None:
        """Append ``line`` (ending in a newline) iff ``expected_size`` bytes are committed; durable on return."""

    def put(self, blobs: dict[str, Path]) -> None:
        """Publish finished files as blobs (name -> file; the files are moved, not copied); durable on return."""

    def remove(self, names: list[str]) -> None:
        """Delete blobs (those a committed redaction replaced, or none committed names); durable
        on return. A name not there is no error (a removal cut short is run again)."""

    def path(self, name: str) -> Path:
        """A local path to read blob ``name`` from."""

    def names(self) -> list[str]:
        """Every blob's name, sorted."""

    def close(self) -> None:
        """Release what the backend holds open."""


class LocalStorage:
    """The commit log as ``MANIFEST`` and the blobs as ``segments/*`` in a log folder."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.commits_path = self.root / "MANIFEST"
        self.blob_dir = self.root / "segments"
        self.staging_dir = self.blob_dir  # a rename within one folder publishes a blob
        self._commits_fd: int | None = None

    def close(self) -> None:
        if self._commits_fd is not None:
            os.close(self._commits_fd)
            self._commits_fd = None

    # ----------------------------------------------------------- commits

    def read_commits(self) -> bytes:
        try:
            return self.commits_path.read_bytes()
        except FileNotFoundError:
            return b""

    def commits_stamp(self) -> tuple[int, int]:
        """(size, mtime) of MANIFEST, by fstat of a descriptor kept open.

        Every append asks, under LOCK; a stat by path there cost 16 writers
        about 15% of their throughput here (its path walk, on caches gone cold
        while the writer slept). The file is only ever appended to in place;
        should it be replaced from outside (the inode held open unlinked), it
        is opened again.
        """
        if self._commits_fd is not None:
            st = os.fstat(self._commits_fd)
            if st.st_nlink:
                return st.st_size, st.st_mtime_ns
            os.close(self._commits_fd)
            self._commits_fd = None
        self._commits_fd = os.open(self.commits_path, os.O_RDONLY | os.O_CLOEXEC)
        st = os.fstat(self._commits_fd)
        return st.st_size, st.st_mtime_ns

    def commit(self, line: bytes, expected_size: int) -> None:
        """Under an flock of the file, so the size checked is the size appended to; a
        torn tail past the committed bytes (an append cut short) is cut off first."""
        if not line.endswith(b"\n") or b"\n" in line[:-1]:
            raise ValueError("a commit is one line ending in a newline")
        fd = os.open(self.commits_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            data = os.pread(fd, os.fstat(fd).st_size, 0)
            committed = data.rfind(b"\n") + 1
            if committed != expected_size:
                raise CommitConflict(expected_size, committed)
            os.ftruncate(fd, committed)
            try:
                pwrite_all(fd, line, committed)
                os.fsync(fd)
            except OSError as exc:
                os.ftruncate(fd, committed)
                if is_full(exc):
                    raise full_error(self.commits_path, exc) from None
                raise
        finally:
            os.close(fd)  # releases the flock
        fsync_dir(self.root)

    # ------------------------------------------------------------- blobs

    def put(self, blobs: dict[str, Path]) -> None:
        """Each file is fsynced and renamed into place; one fsync of the folder covers the renames."""
        for name, source in blobs.items():
            with open(source, "rb") as fh:
                os.fsync(fh.fileno())  # cheap when the writer synced it already (segment files are)
            os.replace(source, self.path(name))
        if blobs:
            fsync_dir(self.blob_dir)

    def remove(self, names: list[str]) -> None:
        for name in names:
            self.path(name).unlink(missing_ok=True)
        if names:
            fsync_dir(self.blob_dir)

    def path(self, name: str) -> Path:
        if "/" in name or name in ("", ".", ".."):
            raise ValueError(f"{name!r} is not a blob name")
        return self.blob_dir / name

    def names(self) -> list[str]:
        return sorted(n for n in os.listdir(self.blob_dir) if not n.endswith(".tmp"))

