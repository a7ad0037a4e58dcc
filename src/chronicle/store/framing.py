"""WAL frames: ``MAGIC(4) | length(4, LE) | crc32c(4, LE) | payload``.

The CRC covers the length and the payload, so a torn or flipped length is
caught too. The magic lets a scan tell a torn tail (nothing valid follows the
first bad frame: the last write was cut short) from corruption (intact frames
follow a damaged one: bytes changed after they were written).

The active WAL file is preallocated ahead of its frames, so its end is a run of
zero bytes: a scan that meets only zeros after its last frame has met the clean
end. (No frame starts with a zero byte: the magic does not.)
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import crc32c

MAGIC = b"CHRW"
HEADER = struct.Struct("<4sII")
HEADER_SIZE = HEADER.size
#: A frame larger than this is treated as damage, not as a length to trust.
MAX_PAYLOAD = 1 << 31


def encode_frame(payload: bytes) -> bytes:
    length = len(payload).to_bytes(4, "little")
    crc = crc32c.crc32c(payload, crc32c.crc32c(length))
    return MAGIC + length + crc.to_bytes(4, "little") + payload


def _frame_at(buf: memoryview, pos: int) -> int | None:
    """Length of the valid frame starting at ``pos``, or None."""
    if len(buf) - pos < HEADER_SIZE:
        return None
    magic, length, crc = HEADER.unpack_from(buf, pos)
    if magic != MAGIC or length > MAX_PAYLOAD:
        return None
    end = pos + HEADER_SIZE + length
    if end > len(buf):
        return None
    payload = buf[pos + HEADER_SIZE : end]
    if crc32c.crc32c(payload, crc32c.crc32c(length.to_bytes(4, "little"))) != crc:
        return None
    return HEADER_SIZE + length


@dataclass(frozen=True)
class Scan:
    """Result of scanning a WAL buffer from some offset."""

    payloads: list[bytes]
    #: Offset just past the last valid frame.
    end: int
    #: Offset of the first bad frame, if any bytes follow ``end``.
    bad_at: int | None
    #: Offset of a valid frame found after ``bad_at`` (so: corruption, not a torn tail).
    resumes_at: int | None

    @property
    def torn_tail(self) -> bool:
        return self.bad_at is not None and self.resumes_at is None

    @property
    def corrupt(self) -> bool:
        return self.resumes_at is not None


def scan(buf: bytes | memoryview, start: int = 0) -> Scan:
    view = memoryview(buf)
    pos = start
    payloads: list[bytes] = []
    while pos < len(view):
        size = _frame_at(view, pos)
        if size is None:
            break
        payloads.append(bytes(view[pos + HEADER_SIZE : pos + size]))
        pos += size
    raw = buf if isinstance(buf, bytes) else bytes(view)
    if raw.count(0, pos) == len(raw) - pos:
        return Scan(payloads, pos, None, None)
    probe = raw.find(MAGIC, pos + 1)
    while probe != -1:
        if _frame_at(view, probe) is not None:
            return Scan(payloads, pos, pos, probe)
        probe = raw.find(MAGIC, probe + 1)
    return Scan(payloads, pos, pos, None)
