"""Readers check a segment file against its MANIFEST record before using it.

A flipped byte in a Parquet file can decode into different values without any
error (a seq printed twice, a row gone), so no reader trusts a segment whose
sha256 it has not seen match the MANIFEST. Hashing runs at about 1 GB/s, so
the result is remembered, in the process and in ``data/log/VERIFIED`` (a
cache, not a record: deleting it costs one re-hash), keyed by the file's
size, inode, mtime and ctime (JSON lines, appended; the last line for a name
counts). A write to the file changes its ctime, which no user can set back,
so a changed file is hashed again.
"""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

import msgspec

from chronicle.store.errors import CorruptionError
from chronicle.store.manifest import BLOCK_SIZE, SegmentFile
from chronicle.store.storage import Storage

_Stamp = tuple[int, int, int, int]  # size, inode, mtime ns, ctime ns
_LINE = msgspec.json.Decoder(tuple[str, int, int, int, int, str])


class SegmentChecks:
    """The segments of one log directory that were hashed and found as committed."""

    def __init__(self, storage: Storage, cache_path: Path):
        self._storage = storage
        self.cache_path = cache_path
        self._seen: dict[str, tuple[_Stamp, str]] | None = None
        self._lock = threading.Lock()

    def path(self, f: SegmentFile, entry_n: int) -> Path:
        """The file's path once its bytes are known to match ``f``; CorruptionError naming it if not."""
        path = self._storage.path(f.name)
        try:
            st = os.stat(path)
        except FileNotFoundError:
            raise CorruptionError(str(path), 0, None, f"missing (listed in MANIFEST entry {entry_n})") from None
        if st.st_size != f.bytes:
            raise CorruptionError(str(path), min(st.st_size, f.bytes), max(st.st_size, f.bytes),
                                  f"{st.st_size} bytes, MANIFEST entry {entry_n} says {f.bytes}")
        stamp = (st.st_size, st.st_ino, st.st_mtime_ns, st.st_ctime_ns)
        with self._lock:
            seen = self._load()
            if seen.get(f.name) == (stamp, f.sha256):
                return path
        _check_bytes(path, f)
        self._remember({f.name: (stamp, f.sha256)})
        return path

    def written(self, files: list[SegmentFile]) -> None:
        """Remember segment files this process just wrote and hashed (no reader need hash them again)."""
        found = {}
        for f in files:
            st = os.stat(self._storage.path(f.name))
            found[f.name] = ((st.st_size, st.st_ino, st.st_mtime_ns, st.st_ctime_ns), f.sha256)
        self._remember(found)

    def _remember(self, found: dict[str, tuple[_Stamp, str]]) -> None:
        with self._lock:
            self._load().update(found)
            lines = b"".join(msgspec.json.encode((name, *stamp, sha)) + b"\n" for name, (stamp, sha) in found.items())
            try:  # appended in one write: concurrent writers' lines never interleave
                fd = os.open(self.cache_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
                try:
                    os.write(fd, lines)
                finally:
                    os.close(fd)
            except OSError:  # a read-only or full disk: only the cache is lost
                pass

    def _load(self) -> dict[str, tuple[_Stamp, str]]:
        if self._seen is None:
            self._seen = {}
            try:
                data = self.cache_path.read_bytes()
            except OSError:
                data = b""
            for line in data.splitlines():
                try:
                    name, size, ino, mtime, ctime, sha = _LINE.decode(line)
                except msgspec.DecodeError:
                    continue  # a torn line: that file is hashed again
                self._seen[name] = ((size, ino, mtime, ctime), sha)
        return self._seen


def _check_bytes(path: Path, f: SegmentFile) -> None:
    whole = hashlib.sha256()
    bad: tuple[int, int] | None = None
    offset = 0
    with open(path, "rb", buffering=0) as fh:
        for i, expected in enumerate(f.block_sha256):
            block = fh.read(BLOCK_SIZE)
            whole.update(block)
            if bad is None and hashlib.sha256(block).hexdigest() != expected:
                bad = (offset, offset + len(block))
            offset += len(block)
        rest = fh.read()
        whole.update(rest)
    if whole.hexdigest() != f.sha256:
        lo, hi = bad if bad is not None else (0, f.bytes)
        raise CorruptionError(str(path), lo, hi, "bytes differ from the sha256 recorded at seal (run `chronicle verify`)")
