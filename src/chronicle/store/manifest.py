"""The MANIFEST: one JSON line per sealed segment, hash-chained.

Appending an entry (and fsyncing it) is the commit point of a seal or a bulk
load. A final line without its newline is an interrupted append: it was never
committed, readers ignore it and the next writer cuts it off. Anything else
that does not check out is corruption.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import msgspec

from chronicle.store.errors import CorruptionError

GENESIS = "0" * 64
#: Segment files are hashed in blocks too, so `verify` can name the bad range.
BLOCK_SIZE = 1 << 20


class SegmentFile(msgspec.Struct, frozen=True):
    name: str
    type: str
    v: int
    rows: int
    bytes: int
    sha256: str
    block_sha256: list[str]


class ManifestEntry(msgspec.Struct, frozen=True):
    n: int
    first_seq: int
    last_seq: int
    min_recorded_at: int
    max_recorded_at: int
    files: list[SegmentFile]
    merkle_root: str
    #: Hash chain over every event hash up to ``last_seq`` (see ``codec``).
    chain: str
    sealed_at: str
    prev: str
    hash: str = ""

    @property
    def count(self) -> int:
        return self.last_seq - self.first_seq + 1


_ENCODER = msgspec.json.Encoder(order="sorted")
_DECODER = msgspec.json.Decoder(ManifestEntry)


def entry_hash(entry: ManifestEntry) -> str:
    body = _ENCODER.encode(msgspec.structs.replace(entry, hash=""))
    return hashlib.sha256(body).hexdigest()


def seal_entry(entry: ManifestEntry) -> ManifestEntry:
    return msgspec.structs.replace(entry, hash=entry_hash(entry))


class ManifestLines(msgspec.Struct):
    """A parsed MANIFEST: entries, each with its byte range, and the committed size."""

    entries: list[ManifestEntry]
    ranges: list[tuple[int, int]]
    committed_size: int
    torn_bytes: int


def parse(path: Path, data: bytes | None = None) -> ManifestLines:
    if data is None:
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            data = b""
    committed = data.rfind(b"\n") + 1
    entries: list[ManifestEntry] = []
    ranges: list[tuple[int, int]] = []
    prev = GENESIS
    pos = 0
    for line_no, line in enumerate(data[:committed].split(b"\n")[:-1], start=1):
        start, end = pos, pos + len(line)
        pos = end + 1
        try:
            entry = _DECODER.decode(line)
        except msgspec.DecodeError as exc:
            raise CorruptionError(str(path), start, end, f"line {line_no} does not parse: {exc}") from None
        if entry.hash != entry_hash(entry):
            raise CorruptionError(str(path), start, end, f"line {line_no}: entry hash does not match its content")
        if entry.prev != prev:
            raise CorruptionError(str(path), start, end, f"line {line_no}: hash chain broken (prev does not match line {line_no - 1})")
        expected_first = entries[-1].last_seq + 1 if entries else 1
        if entry.n != line_no or entry.first_seq != expected_first:
            raise CorruptionError(
                str(path), start, end,
                f"line {line_no}: expected entry {line_no} starting at seq {expected_first}, "
                f"found entry {entry.n} at seq {entry.first_seq}",
            )
        entries.append(entry)
        ranges.append((start, end))
        prev = entry.hash
    return ManifestLines(entries, ranges, committed, len(data) - committed)


def line(entry: ManifestEntry) -> bytes:
    """The entry as the MANIFEST holds it: one JSON line (committed by ``Storage.commit``)."""
    return _ENCODER.encode(entry) + b"\n"
