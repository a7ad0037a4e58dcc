"""Transcripts back out of the log, byte for byte: the backup promise.

A file's bytes are the ``raw`` of its line events (``session.line``, ``codex.line``: its source's) of its latest
generation, in offset order (sidecars: the latest ``session.meta``). Before a
file is written, its bytes are checked against the chunk hashes recorded in
``source.appended`` at ingest, and the chunks must tile the file from byte 0.
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import polars as pl

from chronicle.errors import CheckFailed
from chronicle.ingest.sources import session_lines, source_of
from chronicle.store import Snapshot
from chronicle.store.fsutil import write_durably


class ExportError(CheckFailed):
    """A file cannot be reproduced exactly (names the file and why)."""


@dataclass(frozen=True, slots=True)
class SourceRecord:
    path: str
    root: str
    rel_path: str
    kind: str
    generation: int


@dataclass(frozen=True, slots=True)
class Exported:
    source: str
    target: str
    bytes: int
    sha256: str


def sources(snap: Snapshot) -> list[SourceRecord]:
    """Every ingested file at its latest generation."""
    seen = (snap.frame("source.seen", ["seq", "path", "root", "rel_path", "kind", "generation"])
            .group_by("path").agg(pl.all().sort_by("seq").last()).sort("path").collect())
    return [SourceRecord(p, r, rel, k, g) for p, r, rel, k, g in
            seen.select("path", "root", "rel_path", "kind", "generation").iter_rows()]


def session_files(snap: Snapshot, session_id: str) -> list[SourceRecord]:
    """The files of one session: its transcript (``<id>.jsonl``) and every
    file whose lines carry its id (subagents; a Codex file's ``session_meta``),
    then their sidecars."""
    lines = session_lines(snap, ["path", "session_id"])
    paths = set() if lines is None else set(
        lines.filter(pl.col("session_id") == session_id).select("path").unique().collect()["path"].to_list())
    out = []
    for s in sources(snap):
        p = PurePosixPath(s.path)
        if s.path in paths or p.stem == session_id or session_id in p.parts:
            out.append(s)
    return out


def content(snap: Snapshot, src: SourceRecord) -> bytes:
    """The file's bytes as ingested, checked against the recorded chunk hashes; a line a redaction
    changed (``chronicle secrets redact``) reads as redacted, and its chunk is vouched for by the
    redaction's record (``chronicle verify``), not by the hash of the bytes as ingested."""
    source = source_of(src.kind)
    redacted = snap.redacted
    if src.kind in source.meta_kinds:
        metas = snap.frame("session.meta", ["seq", "path", "sha256", "raw"]).filter(pl.col("path") == src.path)
        last = metas.sort("seq").tail(1).collect()
        if last.height == 0:
            raise ExportError(f"{src.path}: no recorded content")
        data = last["raw"][0]
        if last["seq"][0] not in redacted and hashlib.sha256(data).hexdigest() != last["sha256"][0]:
            raise ExportError(f"{src.path}: recorded content does not match its sha256")
        return data
    where = (pl.col("path") == src.path) & (pl.col("generation") == src.generation)
    lines = (snap.frame(source.line_event.type_name(), ["seq", "path", "generation", "offset", "raw"])
             .filter(where).sort("offset").collect())
    chunks = (snap.frame("source.appended", ["path", "generation", "start", "end", "sha256"])
              .filter(where).sort("start").collect())
    raws, offsets, seqs = lines["raw"].to_list(), lines["offset"].to_list(), lines["seq"].to_list()
    pos = i = 0
    for start, end, sha in chunks.select("start", "end", "sha256").iter_rows():
        if start != pos:
            raise ExportError(f"{src.path}: recorded chunks leave a gap at byte {pos:,} (next starts at {start:,})")
        first = i
        while i < len(offsets) and offsets[i] < end:  # the lines of this chunk, by their offsets as ingested
            i += 1
        if not any(seq in redacted for seq in seqs[first:i]):
            if hashlib.sha256(b"".join(raws[first:i])).hexdigest() != sha:
                raise ExportError(f"{src.path}: bytes {start:,}-{end:,} do not match the hash recorded at ingest")
        pos = end
    if i != len(raws) or (not redacted and pos != sum(map(len, raws))):
        raise ExportError(f"{src.path}: {sum(map(len, raws)):,} bytes of lines but chunks cover {pos:,}")
    return b"".join(raws)


def safe_target(out_dir: Path, rel_path: str) -> Path:
    """``out_dir / rel_path``, refusing any path (from the log) that would leave ``out_dir``."""
    rel = PurePosixPath(rel_path)
    if rel.is_absolute() or ".." in rel.parts or not rel.parts:
        raise ExportError(f"refusing to write {rel_path!r}: not a relative path inside the export folder")
    target = (out_dir / Path(*rel.parts)).resolve()
    if not target.is_relative_to(out_dir.resolve()):
        raise ExportError(f"refusing to write {rel_path!r}: it resolves outside {out_dir}")
    return target


def export_tree(snap: Snapshot, out_dir: Path, files: list[SourceRecord]) -> list[Exported]:
    done: dict[Path, str] = {}
    out = []
    for src in files:
        target = safe_target(out_dir, src.rel_path)
        if target in done:
            raise ExportError(f"{src.path} and {done[target]} both export to {target}")
        data = content(snap, src)
        target.parent.mkdir(parents=True, exist_ok=True)
        write_durably(target, data)
        done[target] = src.path
        out.append(Exported(src.path, str(target), len(data), hashlib.sha256(data).hexdigest()))
    return out


def write_one(snap: Snapshot, src: SourceRecord, target: Path | None,
              transform: Callable[[bytes], bytes] | None = None) -> Exported:
    """The file's bytes as ingested (checked), changed by ``transform`` when given (masking)."""
    data = content(snap, src)
    if transform is not None:
        data = transform(data)
    if target is None:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return Exported(src.path, "-", len(data), hashlib.sha256(data).hexdigest())
    write_durably(target, data)
    return Exported(src.path, str(target), len(data), hashlib.sha256(data).hexdigest())
