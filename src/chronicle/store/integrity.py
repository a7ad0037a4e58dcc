"""Integrity: recompute every hash and name the first place that disagrees.

Checked, in order: the MANIFEST hash chain; each segment file's bytes (whole
file and 1 MiB blocks, so a flipped byte is located); each row's content hash
rebuilt from its typed columns; seq contiguity; each segment's Merkle root and
the running event hash chain; then the WAL frames (a torn tail is a warning,
a damaged frame followed by intact ones is corruption).

The *head hash* is the event hash chain at the last seq:
``chain_n = sha256(chain_{n-1} || event_hash_n)``, ``chain_0`` = 32 zero
bytes. It depends only on the events, not on how they were sealed, so a
checkpoint ``(seq, head hash)`` can be re-proved later at any size.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timezone

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from chronicle.store import codec, framing, manifest
from chronicle.store.errors import CorruptionError
from chronicle.store.id_index import decode_records
from chronicle.store.log import EventLog
from chronicle.store.marks import Mark


@dataclass(frozen=True)
class Problem:
    path: str
    start: int | None
    end: int | None
    reason: str
    fatal: bool = True

    def __str__(self) -> str:
        where = "" if self.start is None else f": bytes {self.start}..{self.end}"
        return f"{self.path}{where}: {self.reason}"


@dataclass
class Report:
    events: int = 0
    segments: int = 0
    files: int = 0
    wal_records: int = 0
    head_seq: int = 0
    head_hash: str = bytes(32).hex()
    #: redactions committed (content replaced, hashes kept)
    redactions: int = 0
    problems: list[Problem] = field(default_factory=list)
    #: chain value at the seq asked for with ``verify(at_seq=...)``.
    hash_at: str | None = None
    #: every event_id read (checked for uniqueness at the end)
    event_ids: list = field(default_factory=list, repr=False)

    @property
    def ok(self) -> bool:
        return not any(p.fatal for p in self.problems)


def _bad_block(data: bytes, blocks: list[str]) -> tuple[int, int]:
    size = manifest.BLOCK_SIZE
    for i, expected in enumerate(blocks):
        chunk = data[i * size : (i + 1) * size]
        if hashlib.sha256(chunk).hexdigest() != expected:
            return i * size, min((i + 1) * size, len(data))
    return 0, len(data)


class _Chain:
    def __init__(self, at_seq: int | None):
        self.value = bytes(32)
        self.seq = 0
        self.at_seq = at_seq
        self.at_value: bytes | None = bytes(32) if at_seq == 0 else None

    def add(self, seq: int, leaf: bytes) -> None:
        self.value = hashlib.sha256(self.value + leaf).digest()
        self.seq = seq
        if seq == self.at_seq:
            self.at_value = self.value


def verify(log: EventLog, at_seq: int | None = None, *, deep: bool = True) -> Report:
    """Check the log. Always: MANIFEST chain, every file's sha256, seq ranges,
    Merkle roots and the event-hash chain, WAL frames. ``deep`` also rebuilds
    every event's canonical encoding from its columns and checks its hash (a
    file rewritten together with its recorded hashes is caught only so)."""
    report = Report()
    chain = _Chain(at_seq)
    synced = log.synced_mark()  # before the log: what the hints vouch for must be in what is read next
    acknowledged = log.acknowledged_head(synced)
    try:
        m = log.read_manifest()
    except CorruptionError as exc:
        report.problems.append(Problem(exc.path, exc.start, exc.end, exc.reason))
        return report
    if m.torn_bytes:
        report.problems.append(
            Problem(str(log.manifest_path), m.committed_size, m.committed_size + m.torn_bytes,
                    "unterminated last line (an interrupted seal; never committed)", fatal=False)
        )
    report.redactions = len(m.redactions)
    left = sorted(set(m.superseded) & set(log.storage.names())) if m.superseded else []
    if left:
        report.problems.append(Problem(str(log.storage.path(left[0])), None, None,
                                       f"replaced by a redaction but still there, with the values it removed "
                                       f"({len(left)} file(s); the next read of the log removes them)", fatal=False))
    for entry, (start, end) in zip(m.entries, m.ranges):
        if not _verify_entry(log, entry, chain, report, deep, m.redacted):
            return report
        if chain.value.hex() != entry.chain:
            report.problems.append(Problem(str(log.manifest_path), start, end, f"entry {entry.n}: event hash chain does not match"))
            return report
        report.segments += 1
    _verify_wal(log, chain, report, synced)
    if report.ok:
        _verify_unique_ids(log, report)
    if report.ok:
        try:
            log.check_complete(chain.seq, acknowledged, m.entries[-1].last_seq if m.entries else 0)
        except CorruptionError as exc:
            report.problems.append(Problem(exc.path, None, None, exc.reason))
    report.head_seq = chain.seq
    report.head_hash = chain.value.hex()
    report.hash_at = chain.at_value.hex() if chain.at_value is not None else None
    return report


def _verify_entry(log: EventLog, entry: manifest.ManifestEntry, chain: _Chain, report: Report, deep: bool,
                  redacted: dict[int, str]) -> bool:
    parts: list[pa.Table] = []
    for f in entry.files:
        path = log.storage.path(f.name)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            report.problems.append(Problem(str(path), None, None, f"missing (listed in MANIFEST entry {entry.n})"))
            return False
        if len(data) != f.bytes or hashlib.sha256(data).hexdigest() != f.sha256:
            lo, hi = _bad_block(data, f.block_sha256) if len(data) == f.bytes else (min(len(data), f.bytes), max(len(data), f.bytes))
            report.problems.append(Problem(str(path), lo, hi, "bytes differ from the sha256 recorded at seal"))
            return False
        table = pq.read_table(path)
        if table.num_rows != f.rows:
            report.problems.append(Problem(str(path), None, None, f"{table.num_rows} rows, MANIFEST says {f.rows}"))
            return False
        stored = table.column("content_hash").to_pylist()
        seqs = table.column("seq").to_pylist()
        for i, computed in enumerate(codec.content_hashes_from_table(table)[0] if deep else ()):
            # a redacted row holds what its redaction recorded; its content_hash, what the chain commits to
            expected = bytes.fromhex(redacted[seqs[i]]) if seqs[i] in redacted else stored[i]
            if computed != expected:
                what = "its redaction recorded" if seqs[i] in redacted else "its hash"
                report.problems.append(Problem(str(path), None, None,
                                               f"row {i} (seq {seqs[i]}): content does not match {what}"))
                return False
        parts.append(table)
        report.event_ids.append(table.column("event_id"))
        report.files += 1
    seqs, _, leaves = codec.leaves_by_seq(parts)
    if seqs != list(range(entry.first_seq, entry.last_seq + 1)):
        report.problems.append(Problem(str(log.manifest_path), None, None,
                                       f"entry {entry.n}: segment seqs are not {entry.first_seq}..{entry.last_seq} contiguous"))
        return False
    if codec.merkle_root(leaves).hex() != entry.merkle_root:
        report.problems.append(Problem(str(log.manifest_path), None, None, f"entry {entry.n}: Merkle root does not match"))
        return False
    for s, leaf in zip(seqs, leaves):
        chain.add(s, leaf)
    report.events += len(seqs)
    return True


def _verify_unique_ids(log: EventLog, report: Report) -> None:
    """Every event_id once in the whole log, whichever path wrote it."""
    if not report.event_ids:
        return
    ids = pl.Series("event_id", pa.chunked_array([c for col in report.event_ids for c in col.chunks], pa.string()))
    repeated = ids.filter(ids.is_duplicated())
    if len(repeated):
        first = repeated[0]
        seqs = _seqs_of(log, first)
        report.problems.append(Problem(str(log.path), None, None,
                                       f"event_id {first!r} is recorded more than once (seqs {seqs}); "
                                       f"{repeated.n_unique()} id(s) repeat"))


def _seqs_of(log: EventLog, event_id: str) -> list[int]:
    env = log.snapshot().envelope().filter(pl.col("event_id") == event_id).select("seq").collect()
    return env["seq"].to_list()


def _verify_wal(log: EventLog, chain: _Chain, report: Report, synced: Mark | None) -> None:
    names = log.wal_names()
    for i, name in enumerate(names):
        path = log.wal_dir / name
        data = path.read_bytes()
        result = framing.scan(data)
        for rec in decode_records(result.payloads):
            if rec.seq <= chain.seq:
                continue
            if rec.seq != chain.seq + 1:
                report.problems.append(Problem(str(path), None, None, f"WAL seq {rec.seq} does not follow {chain.seq}"))
                return
            chain.add(rec.seq, codec.event_hash(rec.seq, rec.recorded_at_us, codec.content_hash(rec.data)))
            report.event_ids.append(pa.chunked_array([[codec.decode_content(rec.data)["event_id"]]], pa.string()))
            report.events += 1
            report.wal_records += 1
        if result.corrupt:
            report.problems.append(Problem(str(path), result.bad_at, result.resumes_at,
                                           "damaged WAL frame followed by intact frames"))
            return
        if result.torn_tail:
            if synced is not None and synced.wal == name and synced.offset > result.end:
                report.problems.append(Problem(str(path), result.bad_at, synced.offset,
                                               "damaged WAL frame below the acknowledged (fdatasynced) mark"))
                return
            report.problems.append(Problem(
                str(path), result.bad_at, len(data),
                "torn tail (a write cut short, never acknowledged; cut off at the next append)",
                fatal=i != len(names) - 1))


@dataclass(frozen=True)
class Checkpoint:
    seq: int
    head_hash: str
    at: datetime

    def __str__(self) -> str:
        return f"{self.seq}:{self.head_hash}"

    @classmethod
    def parse(cls, text: str) -> Checkpoint:
        seq, _, digest = text.strip().partition(":")
        if not seq.isdigit() or len(digest) != 64:
            raise ValueError(f"not a checkpoint (expected SEQ:HEX64): {text!r}")
        return cls(int(seq), digest, datetime.now(timezone.utc))


def checkpoint(log: EventLog) -> Checkpoint:
    """(head seq, head hash) from the MANIFEST chain plus the WAL tail; no full scan."""
    m, records = log.read_wal()
    value = bytes.fromhex(m.entries[-1].chain) if m.entries else bytes(32)
    seq = m.entries[-1].last_seq if m.entries else 0
    for rec in records:
        value = hashlib.sha256(value + codec.event_hash(rec.seq, rec.recorded_at_us, codec.content_hash(rec.data))).digest()
        seq = rec.seq
    return Checkpoint(seq, value.hex(), datetime.now(timezone.utc))
