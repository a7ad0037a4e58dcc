"""The MANIFEST: one JSON line per commit, hash-chained.

A line is a segment entry (a seal or a bulk load: its files, seq range,
Merkle root and event chain) or a redaction (``Redaction``: files that take
the place of an earlier entry's, with the values of some events replaced; see
``store.redaction``). Appending a line (and fsyncing it) is the commit point. A final line without its newline is an interrupted append: it was never
committed, readers ignore it and the next writer cuts it off. Anything else
that does not check out is corruption.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import msgspec

from chronicle.store.errors import CorruptionError
from chronicle.store.head import REDACTION_MARK

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
    #: The line's number in the MANIFEST (1-based, counting redactions too).
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


class RedactedFile(msgspec.Struct, frozen=True):
    #: The segment entry (its line number) whose file this takes the place of.
    entry: int
    #: The name of the file it replaces (the entry's own, or an earlier redaction's).
    replaces: str
    file: SegmentFile


class RedactedRow(msgspec.Struct, frozen=True):
    seq: int
    #: sha256 (hex) of the row's canonical encoding as redacted; its ``content_hash``
    #: column keeps the original's, which the event hash chain commits to.
    content_hash: str
    #: The fields whose values were replaced.
    fields: list[str]


class Redaction(msgspec.Struct, frozen=True, tag="redaction", tag_field="kind"):
    n: int
    files: list[RedactedFile]
    rows: list[RedactedRow]
    #: Who asked (the user name) and when (UTC, ISO 8601).
    by: str
    at: str
    #: Why: the ids of the findings whose values were removed.
    findings: list[str]
    prev: str
    hash: str = ""


_ENCODER = msgspec.json.Encoder(order="sorted")
_DECODER = msgspec.json.Decoder(ManifestEntry)
_REDACTION = msgspec.json.Decoder(Redaction)


def entry_hash(entry: ManifestEntry | Redaction) -> str:
    body = _ENCODER.encode(msgspec.structs.replace(entry, hash=""))
    return hashlib.sha256(body).hexdigest()


def seal_entry(entry: ManifestEntry) -> ManifestEntry:
    return msgspec.structs.replace(entry, hash=entry_hash(entry))


class ManifestLines(msgspec.Struct):
    """A parsed MANIFEST: segment entries (each with the files it holds now, after any
    redaction) with their byte ranges, the redactions, and the committed size."""

    entries: list[ManifestEntry]
    ranges: list[tuple[int, int]]
    committed_size: int
    torn_bytes: int
    redactions: list[Redaction] = []
    #: Line count and the last line's hash: what the next commit follows.
    lines: int = 0
    last_hash: str = GENESIS
    #: seq -> sha256 (hex) of its content as redacted, for every redacted event.
    redacted: dict[int, str] = {}
    #: Files a redaction replaced: deleted once it committed (see ``store.redaction``).
    superseded: list[str] = []


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
    redactions: list[Redaction] = []
    redacted: dict[int, str] = {}
    superseded: list[str] = []
    index: dict[int, int] = {}  # segment entry line number -> its place in entries
    line_no = 0
    for line_no, line in enumerate(data[:committed].split(b"\n")[:-1], start=1):
        start, end = pos, pos + len(line)
        pos = end + 1
        try:
            entry = (_REDACTION if REDACTION_MARK in line else _DECODER).decode(line)
        except msgspec.DecodeError as exc:
            raise CorruptionError(str(path), start, end, f"line {line_no} does not parse: {exc}") from None
        if entry.hash != entry_hash(entry):
            raise CorruptionError(str(path), start, end, f"line {line_no}: entry hash does not match its content")
        if entry.prev != prev:
            raise CorruptionError(str(path), start, end, f"line {line_no}: hash chain broken (prev does not match line {line_no - 1})")
        prev = entry.hash
        if isinstance(entry, Redaction):
            if entry.n != line_no:
                raise CorruptionError(str(path), start, end, f"line {line_no}: a redaction numbered {entry.n}")
            _apply(entry, entries, index, redacted, superseded, str(path), (start, end))
            redactions.append(entry)
            continue
        expected_first = entries[-1].last_seq + 1 if entries else 1
        if entry.n != line_no or entry.first_seq != expected_first:
            raise CorruptionError(
                str(path), start, end,
                f"line {line_no}: expected entry {line_no} starting at seq {expected_first}, "
                f"found entry {entry.n} at seq {entry.first_seq}",
            )
        index[entry.n] = len(entries)
        entries.append(entry)
        ranges.append((start, end))
    return ManifestLines(entries, ranges, committed, len(data) - committed, redactions, line_no, prev,
                         redacted, superseded)


def _apply(r: Redaction, entries: list[ManifestEntry], index: dict[int, int], redacted: dict[int, str],
           superseded: list[str], path: str, where: tuple[int, int]) -> None:
    """Put a redaction's files in the place of those it replaces (the entry keeps its hash:
    it is the line as committed, and the event chain is the same)."""
    for rf in r.files:
        i = index.get(rf.entry)
        names = [f.name for f in entries[i].files] if i is not None else []
        if rf.replaces not in names:
            raise CorruptionError(path, *where, f"line {r.n}: redaction replaces {rf.replaces!r}, which entry "
                                  f"{rf.entry} does not hold")
        assert i is not None
        old = entries[i].files[names.index(rf.replaces)]
        if (old.type, old.v, old.rows) != (rf.file.type, rf.file.v, rf.file.rows):
            raise CorruptionError(path, *where, f"line {r.n}: {rf.file.name} is not a redacted copy of {rf.replaces}")
        files = [rf.file if f.name == rf.replaces else f for f in entries[i].files]
        entries[i] = msgspec.structs.replace(entries[i], files=files)
        superseded.append(rf.replaces)
    for row in r.rows:
        redacted[row.seq] = row.content_hash


def line(entry: ManifestEntry | Redaction) -> bytes:
    """The entry as the MANIFEST holds it: one JSON line (committed by ``Storage.commit``)."""
    return _ENCODER.encode(entry) + b"\n"
