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

from dataclasses import dataclass

import crc32c

from chronicle.store.frame_format import HEADER, HEADER_SIZE, MAGIC
_unpack_header = HEADER.unpack_from
_crc32c = crc32c.crc32c


def encode_frame(payload: bytes) -> bytes:
    length = len(payload).to_bytes(4, "little")
    crc = crc32c.crc32c(payload, crc32c.crc32c(length))
    return MAGIC + length + crc.to_bytes(4, "little") + payload


def _frame_at(buf: memoryview, pos: int) -> int | None:
    """Length of the valid frame starting at ``pos``, or None."""
    if len(buf) - pos < HEADER_SIZE:
        return None
    magic, length, crc = _unpack_header(buf, pos)
    end = pos + HEADER_SIZE + length
    if magic != MAGIC or end > len(buf) or _crc32c(buf[pos + HEADER_SIZE : end], _crc32c(buf[pos + 4 : pos + 8])) != crc:
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
    size = len(view)
    pos = start
    payloads: list[bytes] = []
    # _frame_at inlined: a writer catching up reads every other writer's
    # frames, so this loop's cost per frame is paid many times over.
    while pos + HEADER_SIZE <= size:
        magic, length, crc = _unpack_header(view, pos)
        end = pos + HEADER_SIZE + length
        if magic != MAGIC or end > size:
            break
        payload = view[pos + HEADER_SIZE : end]
        if _crc32c(payload, _crc32c(view[pos + 4 : pos + 8])) != crc:
            break
        payloads.append(payload.tobytes())
        pos = end
    raw = buf if isinstance(buf, bytes) else bytes(view)
    if raw.count(0, pos) == len(raw) - pos:
        return Scan(payloads, pos, None, None)
    probe = raw.find(MAGIC, pos + 1)
    while probe != -1:
        if _frame_at(view, probe) is not None:
            return Scan(payloads, pos, pos, probe)
        probe = raw.find(MAGIC, probe + 1)
    return Scan(payloads, pos, pos, None)
