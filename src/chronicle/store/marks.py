"""Shared offset marks between writer processes: how far the active WAL file
has been written (WRITTEN) and how far an fdatasync has made it durable (SYNCED).

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

# WAL file name (24 ASCII bytes), offset, CRC32C of the two.
_RECORD = struct.Struct("<24sQI")


class Mark(NamedTuple):
    wal: str  # WAL file name
    offset: int


class MarkFile(KeptOpenFile):
    """One mark in a small file, its descriptor kept open."""

    def read(self) -> Mark | None:
        raw = os.pread(self._descriptor(), _RECORD.size, 0)
        if len(raw) != _RECORD.size:
            return None
        name, offset, crc = _RECORD.unpack(raw)
        if crc32c.crc32c(raw[:-4]) != crc:  # empty, torn, or an older format
            return None
        return Mark(name.decode("ascii", "replace"), offset)

    def write(self, mark: Mark) -> None:
        head = _RECORD.pack(mark.wal.encode("ascii"), mark.offset, 0)[:-4]
        os.pwrite(self._descriptor(), head + crc32c.crc32c(head).to_bytes(4, "little"), 0)
