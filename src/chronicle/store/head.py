"""The log's head seq, read from the MANIFEST's last line and the WAL frames alone.

Light on purpose (the standard library only: no Arrow, no Polars, no event
classes, no msgspec or CRC library): a reader that only needs to know whether
something it built is behind the log asks this, in a few milliseconds. Frames
are walked by their lengths without checking their CRCs, and the MANIFEST's
hash chain is not checked: a damaged file can only make the answer "behind",
and whoever then reads the log checks everything.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

from chronicle.store.frame_format import HEADER, HEADER_SIZE, MAGIC

#: How a redaction's MANIFEST line is told from a segment entry's (``manifest.Redaction``).
REDACTION_MARK = b'"kind":"redaction"'

_INT = {0xCC: struct.Struct(">B"), 0xCD: struct.Struct(">H"), 0xCE: struct.Struct(">I"), 0xCF: struct.Struct(">Q"),
        0xD0: struct.Struct(">b"), 0xD1: struct.Struct(">h"), 0xD2: struct.Struct(">i"), 0xD3: struct.Struct(">q")}
_BIN = {0xC4: struct.Struct(">B"), 0xC5: struct.Struct(">H"), 0xC6: struct.Struct(">I")}


def span(payload: bytes | memoryview) -> tuple[int, int, int]:
    """(first seq, number of events, recorded_at µs) of a WAL payload, from its msgpack
    head ``[first_seq, recorded_at_us, versions, events]`` (see ``batch``) without decoding the events."""
    data = bytes(payload[:32])
    if not data or data[0] not in (0x94, 0xDC, 0xDD):
        raise ValueError("not a WAL payload")
    pos = {0x94: 1, 0xDC: 3, 0xDD: 5}[data[0]]
    first, pos = _int(data, pos)
    recorded, pos = _int(data, pos)
    kind = data[pos]
    if kind not in _BIN:
        raise ValueError("not a WAL payload")
    (count,) = _BIN[kind].unpack_from(data, pos + 1)
    return first, count, recorded


def _int(data: bytes, pos: int) -> tuple[int, int]:
    tag = data[pos]
    if tag < 0x80:  # positive fixint
        return tag, pos + 1
    if tag >= 0xE0:  # negative fixint
        return tag - 0x100, pos + 1
    fmt = _INT.get(tag)
    if fmt is None:
        raise ValueError("not a WAL payload")
    return fmt.unpack_from(data, pos + 1)[0], pos + 1 + fmt.size


def _frames_head(data: bytes) -> int:
    """The last seq of the whole frames in a WAL file's bytes (0 if none)."""
    head, pos, view = 0, 0, memoryview(data)
    while pos + HEADER_SIZE <= len(data):
        magic, length, _ = HEADER.unpack_from(data, pos)
        end = pos + HEADER_SIZE + length
        if magic != MAGIC or end > len(data):
            break
        try:
            first, count, _ = span(view[pos + HEADER_SIZE : end])
        except (ValueError, IndexError, struct.error):
            break
        head = max(head, first + count - 1)
        pos = end
    return head


def _sealed_head(manifest: Path) -> int:
    """last_seq of the MANIFEST's last committed segment entry (0 for none); a redaction's
    line has none, so lines are read back from the end past any."""
    try:
        with open(manifest, "rb") as fh:
            size = fh.seek(0, os.SEEK_END)
            window = 1 << 16
            while True:
                fh.seek(max(0, size - window))
                tail = fh.read()
                lines = tail[: tail.rfind(b"\n") + 1].split(b"\n")
                if window < size:
                    lines = lines[1:]  # the first may be cut
                for line in reversed(lines):
                    if line.strip() and REDACTION_MARK not in line:
                        try:
                            return int(json.loads(line)["last_seq"])
                        except (ValueError, KeyError, TypeError):
                            return 0
                if window >= size:
                    return 0
                window *= 4
    except FileNotFoundError:
        return 0


def redactions(log_dir: Path) -> int:
    """How many redactions the MANIFEST holds (what was built before one may hold what it took out)."""
    try:
        return (log_dir / "MANIFEST").read_bytes().count(REDACTION_MARK)
    except FileNotFoundError:
        return 0


def log_head(log_dir: Path) -> int:
    """The last seq in the MANIFEST and the WAL (as readers see them; no lock taken)."""
    head = 0
    for _ in range(50):
        head = _sealed_head(log_dir / "MANIFEST")
        try:
            for name in sorted(n for n in os.listdir(log_dir / "wal") if n.endswith(".wal")):
                with open(log_dir / "wal" / name, "rb") as fh:
                    head = max(head, _frames_head(fh.read()))
        except FileNotFoundError:  # sealed meanwhile
            continue
        return head
    return head
