"""Shared offset marks between writer processes: how far the active WAL file
has been written (WRITTEN) and how far an fdatasync has made it durable (SYNCED).

WRITTEN also carries the head (last seq, its commit time) its frames reach,
so a writer catching up with others' appends reads one mark instead of their
frames. Both carry an ``epoch``: a random token that changes whenever the
active file is cut back, so a SYNCED mark taken before a cut can never vouch
for bytes written after it.

A mark is a hint, never the truth (the frames are): a missing or damaged mark
costs a rescan or an extra fsync, nothing more. Each record carries a CRC so
a reader racing a writer of the mark sees either a whole record or none.
"""

from __future__ import annotations

import os
import struct
from typing import NamedTuple

import crc32c

from chronicle.store.fsutil import KeptOpenFile

# WAL file name (24 ASCII bytes), offset, head seq, head time, epoch, CRC32C of the rest.
_RECORD = struct.Struct("<24sQQQQI")


class Mark(NamedTuple):
    wal: str  # WAL file name
    offset: int
    epoch: int
    head_seq: int = 0  # WRITTEN only: the last seq in frames below ``offset``
    head_time_us: int = 0  # WRITTEN only: the latest recorded_at among them

    def reaches(self, wal: str, epoch: int, end: int) -> bool:
        """Whether this mark counts bytes [0, end) of ``wal`` as written (or synced) in ``epoch``."""
        return self.wal == wal and self.epoch == epoch and self.offset >= end


class MarkFile(KeptOpenFile):
    """One mark in a small file, its descriptor kept open."""

    def read(self) -> Mark | None:
        raw = os.pread(self._descriptor(), _RECORD.size, 0)
        if len(raw) != _RECORD.size:
            return None
        name, offset, head_seq, head_time_us, epoch, crc = _RECORD.unpack(raw)
        if crc32c.crc32c(raw[:-4]) != crc:  # empty, torn, or an older format
            return None
        return Mark(name.decode("ascii", "replace"), offset, epoch, head_seq, head_time_us)

    def write(self, mark: Mark) -> None:
        head = _RECORD.pack(mark.wal.encode("ascii"), mark.offset, mark.head_seq, mark.head_time_us,
                            mark.epoch, 0)[:-4]
        os.pwrite(self._descriptor(), head + crc32c.crc32c(head).to_bytes(4, "little"), 0)
