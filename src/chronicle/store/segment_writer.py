"""Sealing: events into Parquet segment files, committed by a MANIFEST entry.

A commit writes its tables as segment files (several at once when large:
compression and hashing release the GIL), publishes them as blobs of the
log's ``Storage``, then appends the MANIFEST entry that names them, with the
event hash chain and Merkle root over their events (see ``manifest``,
``codec``). The entry is the commit point: a crash before it leaves files no
entry names, which the next seal writes again.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from chronicle.events import event_class
from chronicle.store import batch, codec, framing, manifest
from chronicle.store.errors import CorruptionError
from chronicle.store.fsutil import full_error, is_full
from chronicle.store.marks import Mark, MarkFile
from chronicle.store.segment_checks import SegmentChecks
from chronicle.store.storage import Storage


class SegmentWriter:
    def __init__(self, storage: Storage, segments: SegmentChecks, committed: MarkFile,
                 read_manifest: Callable[[], manifest.ManifestLines]):
        self._storage = storage
        self._segments = segments
        self._committed = committed
        self._read_manifest = read_manifest

    def seal_wal_file(self, path: Path) -> manifest.ManifestEntry | None:
        """Commit the events of a rotated WAL file not yet in the MANIFEST (None when all are)."""
        data = path.read_bytes()
        result = framing.scan(data)
        if result.bad_at is not None:
            raise CorruptionError(str(path), result.bad_at, result.resumes_at, "bad frame in a rotated WAL file")
        m = self._read_manifest()
        head = m.entries[-1].last_seq if m.entries else 0
        rows = [row for p in result.payloads for row in batch.segment_rows(p) if row["seq"] > head]
        entry = None
        if rows:
            if rows[0]["seq"] != head + 1:
                raise CorruptionError(str(path), 0, None, f"WAL starts at seq {rows[0]['seq']}, log head is {head}")
            entry = self._commit_rows(rows, m)
        return entry

    def _commit_rows(self, rows: list[dict], m: manifest.ManifestLines) -> manifest.ManifestEntry:
        """Write rows (content + seq, recorded_at µs, content_hash, size; in seq
        order) as segment files and commit them with a MANIFEST entry."""
        groups: dict[tuple[str, int], list[dict]] = {}
        for row in rows:
            groups.setdefault((row["type"], row["v"]), []).append(row)
        tables = {key: codec.rows_to_table(event_class(*key), grp) for key, grp in groups.items()}
        return self.commit_tables(tables, m)

    def commit_tables(self, tables: dict[tuple[str, int], pa.Table], m: manifest.ManifestLines) -> manifest.ManifestEntry:
        """Write ``tables`` (each in seq order) as segment files and commit them after ``m``."""
        seqs, times, leaves = codec.leaves_by_seq(list(tables.values()))
        first, last = seqs[0], seqs[-1]
        jobs = []
        for (type_name, v), table in sorted(tables.items()):
            parts = _split_rows(table, max(1, min(WRITERS, table.nbytes // SPLIT_BYTES)))
            for k, part in enumerate(parts):
                suffix = f".p{k}" if len(parts) > 1 else ""
                fname = f"seg-{first:012d}-{last:012d}.{type_name}.v{v}{suffix}.parquet"
                jobs.append((fname, type_name, v, part))
        if len(jobs) == 1:
            files = [self.write_file(*jobs[0])]
        else:  # compression and hashing release the GIL: big commits use every core
            files = list(_segment_writers().map(lambda job: self.write_file(*job), jobs))
        self._storage.put({f.name: self.staged(f.name) for f in files})
        self._segments.written(files)  # hashed as they were written: readers need not hash them again
        chain = bytes.fromhex(m.entries[-1].chain) if m.entries else bytes(32)
        for leaf in leaves:
            chain = hashlib.sha256(chain + leaf).digest()
        entry = manifest.seal_entry(
            manifest.ManifestEntry(
                n=m.lines + 1,
                first_seq=first,
                last_seq=last,
                min_recorded_at=min(times),
                max_recorded_at=max(times),
                files=files,
                merkle_root=codec.merkle_root(leaves).hex(),
                chain=chain.hex(),
                sealed_at=datetime.now(timezone.utc).isoformat(timespec="microseconds"),
                prev=m.last_hash,
            )
        )
        self._storage.commit(manifest.line(entry), m.committed_size)
        self._committed.write(Mark("", 0, 0, last, max(times)))
        return entry

    def staged(self, fname: str) -> Path:
        return self._storage.staging_dir / (fname + ".tmp")

    def write_file(self, fname: str, type_name: str, v: int, table: pa.Table) -> manifest.SegmentFile:
        """Write the file under a temp name (Arrow writes it without the GIL), hash it
        block by block from the page cache and fsync it (``put`` publishes it).

        Encoding into memory first cost more than reading back: the growing buffer
        is copied on every doubling and its fresh pages zeroed."""
        tmp = self.staged(fname)
        # Dictionary-encoding unique blobs (transcript lines, responses), or min/max
        # statistics over them, only costs time;
        # zstd level 1 compresses this text about as well as the default level, faster.
        not_blobs = [f.name for f in table.schema if not pa.types.is_large_binary(f.type)]
        try:
            with pa.OSFile(str(tmp), "wb") as sink:
                pq.write_table(table, sink, compression="zstd", compression_level=1, row_group_size=256 * 1024,
                               use_dictionary=not_blobs, write_statistics=not_blobs)
            size, whole, blocks = _hash_and_sync(tmp)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            if is_full(exc):
                raise full_error(self._storage.path(fname), exc) from None
            raise
        return manifest.SegmentFile(
            name=fname, type=type_name, v=v, rows=table.num_rows, bytes=size,
            sha256=whole, block_sha256=blocks,
        )


#: A table larger than this is written as several files (in seq order) at once.
SPLIT_BYTES = 8 << 20
WRITERS = max(2, min(4, os.cpu_count() or 1))
_writers: ThreadPoolExecutor | None = None


def _segment_writers() -> ThreadPoolExecutor:
    global _writers
    if _writers is None:
        _writers = ThreadPoolExecutor(max_workers=WRITERS, thread_name_prefix="chronicle-segment")
    return _writers


def _forget_writers() -> None:
    """A forked child has none of the parent's threads: it starts its own pool."""
    global _writers
    _writers = None


os.register_at_fork(after_in_child=_forget_writers)


def _split_rows(table: pa.Table, parts: int) -> list[pa.Table]:
    """``table`` as up to ``parts`` consecutive row ranges (zero-copy slices)."""
    step = -(-table.num_rows // parts)
    return [table.slice(i, step) for i in range(0, table.num_rows, step)] or [table]


def _hash_and_sync(path: Path) -> tuple[int, str, list[str]]:
    """(size, sha256, sha256 of each manifest block) of a file, in one read; then fsync it."""
    whole = hashlib.sha256()
    blocks = []
    size = 0
    buf = bytearray(manifest.BLOCK_SIZE)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as fh:
        while n := fh.readinto(buf):
            block = view[:n]
            whole.update(block)
            blocks.append(hashlib.sha256(block).hexdigest())
            size += n
        os.fsync(fh.fileno())
    if not blocks:
        blocks.append(hashlib.sha256(b"").hexdigest())
    return size, whole.hexdigest(), blocks
