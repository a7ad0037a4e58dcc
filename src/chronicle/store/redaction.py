"""Redaction: values removed from sealed events, the log still verifiable.

An event's hash commits to the sha256 of its content, not to the content
(``codec.event_hash``), so seqs, Merkle roots, the event chain and every
checkpoint printed before stay true when content goes, as Certificate
Transparency redacts entries. A redaction rewrites each segment file that
holds an affected event, with new values in the fields named, and commits one
MANIFEST line (``manifest.Redaction``): the new files in the place of the old,
each affected row's seq with the sha256 of its content as redacted, who asked,
when, and why (finding ids). The ``content_hash`` column keeps the original
hashes. ``verify`` checks a redacted row against the hash its redaction
recorded, and the new files' bytes against their sha256 like any segment's: a
redacted file altered again fails.

Crash safety, as for a seal: the new files are put under names no commit
names (``<segment>.r<N>.parquet``, N the redaction's line), the MANIFEST line
is the commit point, and the files it replaced are removed after it. Killed
before the commit, the log is as it was (the files put are orphans, removed by
the next redaction); killed after, the replaced files are removed by
``finish``, which every snapshot runs while one is left.
"""

from __future__ import annotations

import bisect
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import NamedTuple

import msgspec
import pyarrow as pa
import pyarrow.parquet as pq

from chronicle.store import codec, manifest
from chronicle.store.errors import StoreError
from chronicle.store.segment_checks import SegmentChecks
from chronicle.store.segment_writer import SegmentWriter
from chronicle.store.storage import Storage

#: Columns a redaction never changes: identity, position and the hash the chain commits to.
FIXED = frozenset((*codec.ENVELOPE_COLUMNS, "content_hash", "size"))
_REDACTED_SUFFIX = re.compile(r"(\.r\d+)?\.parquet$")
_REDACTED_ONLY = re.compile(r"\.r\d+\.parquet$")


class Change(NamedTuple):
    """New values for some fields of one sealed event."""

    type: str
    seq: int
    values: dict[str, object]


def redacted_name(name: str, n: int) -> str:
    """``seg-...parquet`` as rewritten by the redaction on MANIFEST line ``n``."""
    return _REDACTED_SUFFIX.sub(f".r{n}.parquet", name, count=1)


def commit(storage: Storage, segments: SegmentChecks, writer: SegmentWriter, m: manifest.ManifestLines,
           changes: list[Change], by: str, findings: list[str]) -> manifest.Redaction:
    """Rewrite the files holding ``changes`` and commit the redaction after ``m`` (every
    event sealed, under LOCK). StoreError, with nothing changed, for a change to an
    event that is not sealed or to a field a redaction may not touch."""
    wanted: dict[int, Change] = {}
    for c in changes:
        bad = sorted(set(c.values) & FIXED)
        if bad:
            raise StoreError(f"seq {c.seq}: a redaction may not change {', '.join(bad)}")
        if c.seq in wanted:
            raise StoreError(f"seq {c.seq}: changed twice in one redaction")
        wanted[c.seq] = c
    seqs = sorted(wanted)
    n = m.lines + 1
    files: list[manifest.RedactedFile] = []
    rows: list[manifest.RedactedRow] = []
    staged: dict[str, Path] = {}
    for entry in m.entries:
        lo = bisect.bisect_left(seqs, entry.first_seq)
        if lo == len(seqs) or seqs[lo] > entry.last_seq:
            continue
        in_entry = [wanted[s] for s in seqs[lo:bisect.bisect_right(seqs, entry.last_seq)]]
        for f in entry.files:
            mine = [c for c in in_entry if c.type == f.type]
            if not mine:
                continue
            table = pq.read_table(segments.path(f, entry.n))  # checked first: a damaged file is never rewritten
            table, done = _replaced(table, mine, f.name)
            if not done:
                continue
            written = writer.write_file(redacted_name(f.name, n), f.type, f.v, table)
            staged[written.name] = writer.staged(written.name)
            files.append(manifest.RedactedFile(entry=entry.n, replaces=f.name, file=written))
            rows.extend(manifest.RedactedRow(seq=c.seq, content_hash=h.hex(), fields=sorted(c.values))
                        for c, h in done)
            for c, _ in done:
                del wanted[c.seq]
    if wanted:
        for path in staged.values():
            path.unlink(missing_ok=True)
        missing = sorted(wanted)
        raise StoreError(f"no sealed {wanted[missing[0]].type} event at seq {missing[0]}"
                         + (f" (nor at {len(missing) - 1} more)" if len(missing) > 1 else ""))
    storage.put(staged)
    segments.written([rf.file for rf in files])
    r = manifest.Redaction(n=n, files=files, rows=sorted(rows, key=lambda r: r.seq), by=by,
                           at=datetime.now(timezone.utc).isoformat(timespec="microseconds"),
                           findings=sorted(set(findings)), prev=m.last_hash)
    r = msgspec.structs.replace(r, hash=manifest.entry_hash(r))
    storage.commit(manifest.line(r), m.committed_size)
    return r


def _replaced(table: pa.Table, changes: list[Change], name: str) -> tuple[pa.Table, list[tuple[Change, bytes]]]:
    """``table`` with the changes of the rows it holds made; those changes, each with the content hash
    of its row as changed."""
    position = {s: i for i, s in enumerate(table.column("seq").to_pylist())}
    done = [c for c in changes if c.seq in position]
    columns: dict[str, list] = {}
    for c in done:
        for field, value in c.values.items():
            if field not in table.column_names:
                raise StoreError(f"{name}: seq {c.seq} has no field {field!r}")
            column = columns.get(field)
            if column is None:
                column = columns[field] = table.column(field).to_pylist()
            column[position[c.seq]] = value
    for field, values in columns.items():
        i = table.column_names.index(field)
        try:
            table = table.set_column(i, table.schema.field(i), pa.array(values, table.schema.field(i).type))
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise StoreError(f"{name}: field {field!r} cannot hold the value given: {exc}") from None
    if not done:
        return table, []
    hashes, sizes = codec.content_hashes_from_table(table)  # ``size`` is the stored content's size
    table = table.set_column(table.column_names.index("size"), "size", pa.array(sizes, pa.int64()))
    return table, [(c, hashes[position[c.seq]]) for c in done]


def orphans(storage: Storage, m: manifest.ManifestLines) -> list[str]:
    """Files a redaction put but never committed (it was killed before its MANIFEST line)."""
    named = {f.name for e in m.entries for f in e.files}
    return [name for name in storage.names() if _REDACTED_ONLY.search(name) and name not in named]


def finish(storage: Storage, m: manifest.ManifestLines) -> list[str]:
    """Remove the files committed redactions replaced (the values they held); the names removed."""
    gone = sorted(set(m.superseded) & set(storage.names())) if m.superseded else []
    storage.remove(gone)
    return gone
