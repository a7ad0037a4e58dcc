"""The event log: durable appends through the WAL, seals into Parquet
segments, bulk loads straight to segments, and consistent snapshots.

On disk (``data/log``)::

    wal/<first seq>.wal     one frame per appended batch (see framing, batch); the newest is active
    segments/*.parquet      sealed events, one file per (type, version) per commit; a large
                            table as several (.p0, .p1, ...: row ranges in seq order)
    MANIFEST                hash-chained JSON lines; the commit point of a seal
    LOCK                    held briefly by every append (seq assignment + write)
    SEAL.lock               held by whoever writes the MANIFEST (seal, bulk load)
    WRITTEN                 how far the active WAL file's frames go, and their head (a hint; see marks)
    SYNCED                  group commit: how far an fdatasync has covered, and its head (a hint)
    COMMITTED               the head of the last MANIFEST commit (a hint)
    VERIFIED                segments whose sha256 a reader checked (a cache; see segment_checks)

SYNCED and COMMITTED are written only after the bytes they vouch for are
durable, so they give a lower bound of what was acknowledged. A log whose
MANIFEST and WAL end below it lost acknowledged events (a shortened MANIFEST,
a damaged or truncated WAL): that is corruption, reported, and no writer
reuses those seqs. A bad frame below SYNCED's offset is likewise damage, never
a torn tail to cut off.

Lock order is always SEAL.lock, then LOCK.

LOCK is the one point every append passes through, so little happens under it:
a writer learns what others appended from the WRITTEN mark (offset, last seq,
its time), not by reading their frames; their event_ids are read only when a
dedupe lookup needs them, and then mostly before taking LOCK (see
``_prefetch_ids`` and ``_search_unindexed``). Reading every other
writer's frames under LOCK made each append cost O(writers) there; reading
the whole log for a new writer's id index under it stalled every other writer
for as long (about a second per two million events).

Group commit: a writer assigns seqs and writes its frames under LOCK, releases
it, then makes them durable in ``_group_sync``: one fdatasync covers every byte
written to the file before it, so a writer whose frames lie below the SYNCED
mark was covered by someone else's and skips its own. The others call
fdatasync side by side, and the kernel joins concurrent flushes of one file;
taking turns under a lock instead serialized the wake-ups, which cost more than
the flushes it saved (4 writers on 2 cores: about 1.4x slower). An append is
acknowledged (returned) only once an fdatasync that began after its write has
finished.

The active WAL file is preallocated (zero-filled) a step ahead of its frames:
an fdatasync after writing into blocks the file already has skips the journal
commit that growing the file needs, which made single durable appends about
1.5x faster here. A large frame (a bulk batch) grows the file itself instead.
A rotated file is cut back to its last frame.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from typing import NamedTuple

import msgspec
import pyarrow as pa
import pyarrow.parquet as pq

from chronicle.events import ClockStep, Event, event_class
from chronicle.store import batch, codec, framing, manifest
from chronicle.store.acks import Ack, FreshAcks
from chronicle.store.batch import WalRecord
from chronicle.store.ids import EMPTY, ID_HASHES, EventIds, SealedIdHashes
from chronicle.store.head import span
from chronicle.store.marks import Mark, MarkFile
from chronicle.store.segment_checks import SegmentChecks
from chronicle.store.errors import (
    ConflictingEvent,
    CorruptionError,
    InvalidEvent,
    NotAWorkspace,
    StoreError,
)
from chronicle.store.fsutil import FileLock, full_error, fsync_dir, is_full, pwrite_all, write_durably

WAL_SUFFIX = ".wal"
#: The active WAL file is zero-filled this far ahead of its frames.
PREALLOCATE = 1 << 20
#: A frame at least this large grows the file with its own write rather than
#: into zeros written ahead: next to such a frame the journal commit is small,
#: and zero-filling first would write (and flush) its bytes twice.
GROWS_BY_ITSELF = 64 << 10
#: Bytes read past the WRITTEN mark to see whether frames follow it.
_PROBE = 4096
#: Bytes x ids a dedupe lookup searches in frames not yet indexed before it indexes them instead.
_SEARCH_BUDGET = 1 << 18


#: A clock this far behind the log's latest time is recorded as a ClockStep.
CLOCK_SLACK_US = 1_000_000


def new_event_id() -> str:
    return secrets.token_hex(16)


def _new_epoch() -> int:
    return secrets.randbits(63)


def _now_us() -> int:
    return time.time_ns() // 1000


def wal_name(first_seq: int) -> str:
    return f"{first_seq:020d}{WAL_SUFFIX}"


def decode_records(payloads: list[bytes]) -> list[WalRecord]:
    return [r for p in payloads for r in batch.records(p)]


class EventLog:
    """One append-only log directory. Safe to use from several processes at once."""

    def __init__(self, path: Path):
        self.path = Path(path)
        if not (self.path / "MANIFEST").is_file():
            raise NotAWorkspace(f"{self.path}: no chronicle log here (run `chronicle init`)")
        self.wal_dir = self.path / "wal"
        self.segment_dir = self.path / "segments"
        self.manifest_path = self.path / "MANIFEST"
        self._lock = FileLock(self.path / "LOCK")
        self._seal_lock = FileLock(self.path / "SEAL.lock")
        self._written = MarkFile(self.path / "WRITTEN")
        self._synced = MarkFile(self.path / "SYNCED")
        self._committed = MarkFile(self.path / "COMMITTED")
        #: Readers take a segment's path from here: its bytes checked against the MANIFEST.
        self.segments = SegmentChecks(self.segment_dir, self.path / "VERIFIED")
        # Writer-side caches, only read or changed while holding LOCK.
        self._manifest: manifest.ManifestLines | None = None
        self._manifest_stamp: tuple[int, int] | None = None
        self._manifest_fd: int | None = None
        self._scanned: dict[str, int] = {}
        self._head_seq = 0
        self._head_time_us = 0
        self._ids: EventIds | None = None
        self._keep_seqs = False  # from this process's first duplicate on (see EventIds)
        self._ids_entries = 0
        # _ids holds the event_ids of WAL frames up to here: (file, offset), and of the MANIFEST's
        # first _ids_entries entries. _ids, _ids_entries, _indexed and the active descriptor are
        # also used outside LOCK (see _prefetch_ids): taken with LOCK, and alone there, _ids_lock
        # keeps this process's threads apart.
        self._indexed: tuple[str, int] = ("", 0)
        self._ids_lock = threading.Lock()
        self._epoch = 0  # of the active WAL file, as of this process's last look (see marks)
        self._fd: int | None = None
        self._fd_name: str | None = None
        # Descriptors whose writes await their fdatasync (outside LOCK) -> how many; one of them
        # replaced meanwhile as the active file is closed only once the last of those syncs ends,
        # since a descriptor number closed early could be reused and the sync made on another file.
        self._fd_guard = threading.Lock()
        self._syncs_due: dict[int, int] = {}
        self._retired: set[int] = set()
        # WAL file name -> size it was zero-filled to, as this process last saw it.
        self._allocated: dict[str, int] = {}

    # ------------------------------------------------------------------ setup

    @classmethod
    def init(cls, path: Path) -> EventLog:
        path = Path(path)
        for sub in ("wal", "segments"):
            (path / sub).mkdir(parents=True, exist_ok=True)
        if not (path / "MANIFEST").exists():
            write_durably(path / "MANIFEST", b"")
            (path / "wal" / wal_name(1)).touch()
            fsync_dir(path / "wal")
        fsync_dir(path)
        return cls(path)

    def close(self) -> None:
        if self._manifest_fd is not None:
            os.close(self._manifest_fd)
            self._manifest_fd = None
        if self._fd is not None:
            self._retire(self._fd)
            self._fd = None
            self._fd_name = None
        for held in (self._lock, self._seal_lock, self._written, self._synced, self._committed):
            held.close()

    def __enter__(self) -> EventLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -------------------------------------------------------- shared state

    def read_manifest(self) -> manifest.ManifestLines:
        return manifest.parse(self.manifest_path)

    def _refresh_manifest(self) -> manifest.ManifestLines:
        stamp = self._manifest_stat()
        if self._manifest is None or stamp != self._manifest_stamp:
            self._manifest = self.read_manifest()
            self._manifest_stamp = stamp
        return self._manifest

    def _manifest_stat(self) -> tuple[int, int]:
        """(size, mtime) of MANIFEST, by fstat of a descriptor kept open.

        Every append asks, under LOCK; a stat by path there cost 16 writers
        about 15% of their throughput here (its path walk, on caches gone cold
        while the writer slept). The file is only ever appended to in place;
        should it be replaced from outside (the inode held open unlinked), it
        is opened again.
        """
        if self._manifest_fd is not None:
            st = os.fstat(self._manifest_fd)
            if st.st_nlink:
                return st.st_size, st.st_mtime_ns
            os.close(self._manifest_fd)
            self._manifest_fd = None
        self._manifest_fd = os.open(self.manifest_path, os.O_RDONLY | os.O_CLOEXEC)
        st = os.fstat(self._manifest_fd)
        return st.st_size, st.st_mtime_ns

    def wal_bytes(self) -> int:
        """Bytes of frames in WAL files (unsealed events), for deciding when to seal."""
        names = self.wal_names()
        written = self._written.read()
        total = 0
        for name in names:
            if name == names[-1] and written is not None and written.wal == name:
                total += written.offset  # not the preallocated zeros
                continue
            try:
                total += (self.wal_dir / name).stat().st_size
            except FileNotFoundError:  # sealed and deleted meanwhile
                continue
        return total

    def wal_names(self) -> list[str]:
        return sorted(n for n in os.listdir(self.wal_dir) if n.endswith(WAL_SUFFIX))

    def _sync_tail(self) -> None:
        """Under LOCK: catch up with what other processes wrote, and cut off a
        torn tail left by a writer that died mid-write (it was never acked)."""
        m = self._refresh_manifest()
        sealed_head = m.entries[-1].last_seq if m.entries else 0
        sealed_time = m.entries[-1].max_recorded_at if m.entries else 0
        if sealed_head > self._head_seq:
            self._head_seq, self._head_time_us = sealed_head, sealed_time
        mark = self._written.read()
        if mark is not None and mark.wal == self._fd_name:
            # No rotation since this process last looked: a rotation moves the
            # mark to the new file before creating it (see _rotate), and older
            # files take no frames after it.
            if self._caught_up_by_mark(mark):
                return
            names = [mark.wal]
            every_file = False
        else:
            names = self.wal_names()
            every_file = True
            self._scanned = {n: off for n, off in self._scanned.items() if n in names}
            if not names:
                names = [wal_name(self._head_seq + 1)]
                (self.wal_dir / names[0]).touch()
                fsync_dir(self.wal_dir)
        # A cut below (_cut_wal) starts a new epoch; so does a mark that cannot be trusted.
        self._epoch = mark.epoch if mark is not None and mark.wal == names[-1] else _new_epoch()
        synced = self._synced.read()
        acknowledged = self.acknowledged_head(synced)
        for i, name in enumerate(names):
            start = self._scanned.get(name, 0)
            if i == len(names) - 1:
                result = self._scan_active(name, start, mark)
                if not result.payloads and result.bad_at is None:
                    continue
            else:
                path = self.wal_dir / name
                size = os.path.getsize(path)
                if size == start:
                    continue
                with open(path, "rb") as fh:
                    fh.seek(start)
                    result = framing.scan(fh.read())
            for p in result.payloads:
                first, count, rec = span(p)
                if first + count - 1 <= sealed_head:
                    continue
                if first != self._head_seq + 1:
                    raise CorruptionError(str(self.wal_dir / name), start, None,
                                          f"WAL seq {first} does not follow {self._head_seq}")
                self._head_seq = first + count - 1
                self._head_time_us = rec  # the latest event's time, not the greatest: a clock step is not carried
            if result.corrupt:
                raise CorruptionError(
                    str(self.wal_dir / name), start + result.bad_at, start + result.resumes_at,
                    "damaged WAL frame followed by intact frames",
                )
            if result.torn_tail:
                if i != len(names) - 1:
                    raise CorruptionError(str(self.wal_dir / name), start + result.end, size,
                                          "bad frame at the end of a rotated WAL file")
                check_not_synced(self.wal_dir / name, start + result.end, synced)
                self._cut_wal(self.wal_dir / name, start + result.end)
            self._scanned[name] = start + result.end
        self._check_complete(self._head_seq, acknowledged, names if every_file else [], sealed_head)

    def synced_mark(self) -> Mark | None:
        return self._synced.read()

    def check_complete(self, head: int, acknowledged: int, sealed_head: int) -> None:
        """CorruptionError when acknowledged events are missing from the log whose
        MANIFEST ends at ``sealed_head`` and whose MANIFEST + WAL end at ``head``."""
        self._check_complete(head, acknowledged, self.wal_names(), sealed_head)

    def acknowledged_head(self, synced: Mark | None = None) -> int:
        """The highest seq the SYNCED and COMMITTED hints say was acknowledged
        (read them before reading the log, so that what they vouch for is there)."""
        if synced is None:
            synced = self._synced.read()
        committed = self._committed.read()
        return max(synced.head_seq if synced is not None else 0, committed.head_seq if committed is not None else 0)

    def _check_complete(self, head: int, acknowledged: int, names: list[str], sealed_head: int) -> None:
        """CorruptionError when acknowledged events are missing from MANIFEST + WAL."""
        if acknowledged > head:
            raise CorruptionError(
                str(self.manifest_path), self.read_manifest().committed_size, None,
                f"seqs {head + 1}..{acknowledged} were acknowledged but are in neither the MANIFEST nor the WAL "
                "(a MANIFEST entry or WAL frames went missing); writers will not reuse them",
            )
        if names and int(names[0][: -len(WAL_SUFFIX)]) > sealed_head + 1:
            raise CorruptionError(
                str(self.manifest_path), self.read_manifest().committed_size, None,
                f"the MANIFEST ends at seq {sealed_head} but the WAL starts at seq {int(names[0][: -len(WAL_SUFFIX)])}: "
                "committed MANIFEST entries went missing; writers will not reuse their seqs",
            )

    def _caught_up_by_mark(self, mark: Mark) -> bool:
        """Under LOCK: take the head from the WRITTEN mark of the active file
        instead of reading the frames others wrote below it, when nothing lies
        past it (a frame there was written by a writer that died before moving
        the mark; the caller's scan picks it up)."""
        if mark.offset < self._scanned.get(mark.wal, 0) or mark.head_seq < self._head_seq:
            return False
        past = os.pread(self._active_fd(mark.wal), _PROBE, mark.offset)
        if past.count(0) != len(past):
            return False
        self._scanned[mark.wal] = mark.offset
        self._head_seq = mark.head_seq
        self._head_time_us = mark.head_time_us
        self._epoch = mark.epoch
        return True

    def _scan_active(self, name: str, start: int, mark: Mark | None) -> framing.Scan:
        """Frames of the active WAL file from ``start`` on.

        Other writers' frames end at the WRITTEN mark, so reading to the mark
        plus a probe usually suffices; a frame past the probe (its writer died
        before moving the mark) or a damaged tail sends us to read the rest.
        """
        fd = self._active_fd(name)
        if start:
            upto = mark.offset if mark is not None and mark.wal == name and mark.offset > start else start
            want = upto - start + _PROBE
            buf = os.pread(fd, want, start)
            result = framing.scan(buf)
            # Clean only if the zeros begin inside what was read (or the file ends there).
            if result.bad_at is None and (result.end < len(buf) or len(buf) < want):
                return result
        size = os.fstat(fd).st_size
        return framing.scan(os.pread(fd, size - start, start))

    def _active_fd(self, name: str) -> int:
        if self._fd_name != name:
            if self._fd is not None:
                self._retire(self._fd)
            self._fd = os.open(self.wal_dir / name, os.O_RDWR | os.O_CLOEXEC)
            self._fd_name = name
        return self._fd

    def _retire(self, fd: int) -> None:
        """Close a descriptor that is no longer the active file's, once no sync awaits it."""
        with self._fd_guard:
            if self._syncs_due.get(fd):
                self._retired.add(fd)
            else:
                os.close(fd)

    def _sync_due(self, fd: int) -> None:
        """Under LOCK, after a write through ``fd``: keep it open until _sync_done."""
        with self._fd_guard:
            self._syncs_due[fd] = self._syncs_due.get(fd, 0) + 1

    def _sync_done(self, fd: int) -> None:
        with self._fd_guard:
            left = self._syncs_due.pop(fd) - 1
            if left:
                self._syncs_due[fd] = left
            elif fd in self._retired:
                self._retired.discard(fd)
                os.close(fd)

    def _preallocate(self, fd: int, name: str, end: int) -> None:
        """Zero-fill the active file a step past ``end`` (see the module doc).

        The size is remembered rather than asked for on every append: a stat
        of the file made the next fdatasync about 50 µs slower here (it marks
        the inode's change counter as seen, so the next write must log it).
        Best effort: where the disk cannot spare the step, the frame's own
        write reports the shortage, with the log unchanged.
        """
        if self._allocated.get(name, 0) >= end:
            return
        size = os.fstat(fd).st_size
        if size < end:
            target = (end // PREALLOCATE + 1) * PREALLOCATE
            try:
                pwrite_all(fd, bytes(target - size), size)
                size = target
            except OSError:
                return
        self._allocated[name] = size

    # ------------------------------------------------------------- dedup

    def _load_ids(self) -> EventIds:
        """Under LOCK: the event_ids of the whole log, up to the MANIFEST
        entries and WAL frames ``_ids_entries`` and ``_indexed`` name (built
        before LOCK by _prefetch_ids, or here when that did not run)."""
        m = self._manifest
        assert m is not None
        if self._ids is None:
            self._build_ids(m, self._fd_name, self._scanned.get(self._fd_name or "", 0))
        else:
            self._add_sealed_ids(m)
        assert self._ids is not None
        return self._ids

    def _add_sealed_ids(self, m: manifest.ManifestLines) -> None:
        """Add to ``_ids`` those of the segments of MANIFEST entries it lacks. Without
        seqs, a fresh index takes the sealed ids' hashes from the IDS cache (and
        writes it again once the entries it lacks hold an eighth as many ids)."""
        assert self._ids is not None
        columns = ["event_id", "seq"] if self._ids.seq_of is not None else ["event_id"]
        cache = None
        if self._ids.seq_of is None and self._ids_entries == 0 and m.entries:
            cache = SealedIdHashes.load(self.path / ID_HASHES, [e.hash for e in m.entries]) or EMPTY
            self._ids.sealed = cache
            self._ids_entries = cache.entries
        uncovered: list[str] = []
        for entry in m.entries[self._ids_entries :]:
            for f in entry.files:
                t = pq.read_table(self.segments.path(f, entry.n), columns=columns)
                ids = t.column("event_id").to_pylist()
                self._ids.add(ids, t.column("seq").to_pylist() if "seq" in columns else ())
                if cache is not None:
                    uncovered += ids
        self._ids_entries = max(self._ids_entries, len(m.entries))
        if cache is not None and len(uncovered) * 8 >= len(cache.hashes):
            try:
                cache.extended(uncovered, len(m.entries), m.entries[-1].hash).save(self.path / ID_HASHES)
            except OSError:
                pass  # a cache: the next writer tries again

    def _content_hashes(self, seqs: set[int]) -> dict[int, bytes]:
        """content_hash of each of ``seqs`` (sealed from segments, unsealed from the WAL)."""
        import pyarrow.compute as pc  # not at import: it costs writers a tenth of a second at start

        m = self._manifest
        assert m is not None
        sealed_head = m.entries[-1].last_seq if m.entries else 0
        found: dict[int, bytes] = {}
        for entry in m.entries:
            wanted = [s for s in seqs if entry.first_seq <= s <= entry.last_seq]
            if not wanted:
                continue
            for f in entry.files:
                t = pq.read_table(self.segments.path(f, entry.n), columns=["seq", "content_hash"])
                t = t.filter(pc.is_in(t.column("seq"), pa.array(wanted, pa.int64())))
                found.update(zip(t.column("seq").to_pylist(), t.column("content_hash").to_pylist()))
        if any(s > sealed_head for s in seqs):
            for name in self.wal_names():
                data = (self.wal_dir / name).read_bytes()[: self._scanned.get(name, 0)]
                for rec in decode_records(framing.scan(data).payloads):
                    if rec.seq in seqs:
                        found[rec.seq] = codec.content_hash(rec.data)
        return found

    def _index_upto(self, name: str, end: int) -> None:
        """Add to ``_ids`` the event_ids of WAL frames from ``_indexed`` up to
        offset ``end`` of file ``name`` (frames there are whole: they lie below
        a WRITTEN mark, or in a rotated file). Holding _ids_lock."""
        assert self._ids is not None
        cur, offset = self._indexed
        names = [name] if name == cur else [n for n in self.wal_names() if cur <= n <= name]
        for n in names:
            start = offset if n == cur else 0
            if n == name and end <= start:
                break
            try:
                if n == self._fd_name and n == name and self._fd is not None:
                    data = os.pread(self._fd, end - start, start)
                else:
                    with open(self.wal_dir / n, "rb") as fh:
                        fh.seek(start)
                        data = fh.read(end - start if n == name else -1)
            except FileNotFoundError:  # sealed meanwhile: _load_ids reads its ids from the segments
                continue
            scan = framing.scan(data)
            self._ids.add(*batch.frame_ids(scan.payloads))
            self._indexed = (n, start + scan.end)

    def _prefetch_ids(self, ids: list[str]) -> None:
        """Before taking LOCK: index the frames others appended since this
        process last looked, so that under LOCK only the few written while it
        waited remain (see _search_unindexed); on first use, index the whole log.

        The whole log is read here, not under LOCK, because for a large log
        that takes seconds, which every other writer would wait out. What is
        sealed or written meanwhile is caught up with under LOCK (_load_ids,
        _search_unindexed).
        """
        mark = self._written.read()
        with self._ids_lock:
            if self._ids is None:
                # The MANIFEST before the WAL: a file sealed meanwhile is in a later entry, read under LOCK.
                wal, end = (mark.wal, mark.offset) if mark is not None else (None, 0)
                self._build_ids(self.read_manifest(), wal, end)
                assert self._ids is not None
                if self._ids.seq_of is None and not self._ids.isdisjoint(ids):
                    self._keep_seqs = True  # a duplicate already: read with seqs (see EventIds), still before LOCK
                    self._build_ids(self.read_manifest(), wal, end)
                mark = self._written.read()  # and what others wrote meanwhile
            if mark is not None and mark.wal >= self._indexed[0]:
                self._index_upto(mark.wal, mark.offset)

    def _build_ids(self, m: manifest.ManifestLines, wal: str | None, end: int) -> None:
        """Index the events of ``m``'s segments and of the WAL frames up to
        offset ``end`` of file ``wal`` (none if None). Holding _ids_lock."""
        self._ids = EventIds(keep_seqs=self._keep_seqs)
        self._ids_entries = 0
        self._indexed = ("", 0)
        self._add_sealed_ids(m)
        if wal is not None:
            self._index_upto(wal, end)

    def _search_unindexed(self, ids: list[str]) -> None:
        """Under LOCK: make ``_ids`` hold every one of ``ids`` that is in the log.

        Frames are msgspec's msgpack, in which a string is its shortest header
        and its UTF-8 bytes, so an event_id in the frames between ``_indexed``
        and the head appears there verbatim in that form: where none of ``ids``
        does, indexing those frames can wait for the next _prefetch_ids. A
        match (perhaps inside some other field) or a search costlier than
        decoding indexes them now.
        """
        name = self._fd_name
        assert name is not None and self._fd is not None  # set by _sync_tail
        end = self._scanned.get(name, 0)
        cur, offset = self._indexed
        if cur == name and offset >= end:
            return
        if cur == name and len(ids) * (end - offset) <= _SEARCH_BUDGET:
            data = os.pread(self._fd, end - offset, offset)
            if not any(msgspec.msgpack.encode(eid) in data for eid in ids):
                return
        self._index_upto(name, end)

    def _existing(self, ids: list[str], content_hash: Callable[[int], bytes]) -> dict[int, int]:
        """Batch index -> seq of events already recorded with identical
        content; raises ConflictingEvent when content differs. Holding
        LOCK and _ids_lock."""
        index = self._load_ids()
        self._search_unindexed(ids)
        if index.isdisjoint(ids):  # the common case, without building a set
            return {}
        if index.seq_of is None:  # this process's first duplicate: read the ids again, with their seqs
            self._keep_seqs = True
            self._ids = None
            index = self._load_ids()
        assert index.seq_of is not None
        known = index.seq_of.keys() & ids
        hits = {i: index.seq_of[eid] for i, eid in enumerate(ids) if eid in known}
        stored = self._content_hashes(set(hits.values()))
        for i, seq in hits.items():
            if stored.get(seq) != content_hash(i):
                raise ConflictingEvent(ids[i], seq, index=i)
        return hits

    @staticmethod
    def _aliases(ids: list[str], content_hash: Callable[[int], bytes]) -> dict[int, int]:
        """Later index -> first index for an event_id repeated within a batch."""
        if len(set(ids)) == len(ids):
            return {}
        first_of: dict[str, int] = {}
        aliases = {}
        for i, eid in enumerate(ids):
            j = first_of.setdefault(eid, i)
            if j != i:
                if content_hash(j) != content_hash(i):
                    raise ConflictingEvent(eid, 0, index=i)
                aliases[i] = j
        return aliases

    # ------------------------------------------------------------ append

    def append(self, events: Sequence[Event]) -> Sequence[Ack]:
        """Durably append ``events`` as one batch: all or nothing.

        Returns one Ack per input event, in order, after the batch is on disk
        (a list, or a FreshAcks when every event was new). A given event_id
        already in the log is a duplicate Ack when the content is the same, and
        ConflictingEvent when it is not: ids are unique across every write path.
        """
        if not events:
            return []
        classes = batch.check_types(events)
        ids = [ev.event_id for ev in events]
        any_given = any(ids)
        if not all(ids):
            events = [ev if ev.event_id else msgspec.structs.replace(ev, event_id=new_event_id()) for ev in events]
            ids = [ev.event_id for ev in events]
        encoded = batch.encode_events(events, classes)

        hashes: dict[int, bytes] = {}  # only needed when an event_id repeats

        def content_hash(i: int) -> bytes:
            if i not in hashes:
                hashes[i] = codec.content_hash(codec.encode(events[i]))
            return hashes[i]

        aliases = self._aliases(ids, content_hash)
        lookup = any_given
        if lookup:
            self._prefetch_ids(ids)
        with self._lock, self._ids_lock:
            self._sync_tail()
            existing = self._existing(ids, content_hash) if lookup else {}
            fresh = range(len(ids))
            if existing or aliases:
                fresh = [i for i in fresh if i not in existing and i not in aliases]
                if not fresh:
                    # They repeat events that may be another writer's, not yet synced (rare: sync under LOCK).
                    name, fd = self._fd_name, self._fd
                    assert name is not None and fd is not None  # set by _sync_tail
                    self._group_sync(fd, name, self._scanned.get(name, 0), self._epoch, self._head_seq)
                    return [Ack(existing[aliases.get(i, i)], eid, True) for i, eid in enumerate(ids)]
                fresh_events = [events[i] for i in fresh]
                encoded = batch.encode_events(fresh_events, batch.check_types(fresh_events))
            name = self._fd_name
            fd = self._fd
            assert name is not None and fd is not None  # set by _sync_tail
            offset = self._scanned.get(name, 0)
            now = _now_us()  # as the clock reads: seqs are the order, times are never carried forward
            first = self._head_seq + 1
            frame = framing.encode_frame(batch.payload(first, now, encoded))
            last = first + len(fresh) - 1
            if now < self._head_time_us - CLOCK_SLACK_US:
                frame += self._clock_step_frame(last + 1, now)
                last += 1
            if len(frame) < GROWS_BY_ITSELF:
                self._preallocate(fd, name, offset + len(frame))
            try:
                pwrite_all(fd, frame, offset)
            except OSError as exc:
                self._cut_wal(self.wal_dir / name, offset)
                if is_full(exc):
                    raise full_error(self.wal_dir / name, exc) from None
                raise
            self._scanned[name] = offset + len(frame)
            self._head_seq = last
            self._head_time_us = now
            epoch = self._epoch
            self._written.write(Mark(name, offset + len(frame), epoch, self._head_seq, now))
            if self._ids is not None:
                fresh_ids = ids if len(fresh) == len(ids) else [ids[i] for i in fresh]
                self._ids.add(fresh_ids, range(first, first + len(fresh)))
                if self._indexed == (name, offset):
                    self._indexed = (name, offset + len(frame))
            self._sync_due(fd)
        try:
            self._group_sync(fd, name, offset + len(frame), epoch, last)
        finally:
            self._sync_done(fd)
        if not existing and not aliases:
            return FreshAcks(first, ids)
        seq_of = dict(zip(fresh, range(first, first + len(fresh))))
        seq_of.update(existing)
        acks = []
        for i, eid in enumerate(ids):
            if i in aliases:
                acks.append(Ack(seq_of[aliases[i]], eid, True))
            else:
                acks.append(Ack(seq_of[i], eid, i in existing))
        return acks

    def _clock_step_frame(self, seq: int, now: int) -> bytes:
        """A frame holding one ClockStep at ``seq``: this writer's clock reads
        earlier than the log's latest time (see events/clock.py)."""
        step = ClockStep(stream="log:clock", event_id=new_event_id(),
                         latest_recorded_at=codec.from_micros(self._head_time_us), clock_at=codec.from_micros(now),
                         step_us=now - self._head_time_us, pid=os.getpid(), host=socket.gethostname())
        return framing.encode_frame(batch.payload(seq, now, batch.encode_events([step], {ClockStep})))

    def _group_sync(self, fd: int, name: str, end: int, epoch: int, head: int) -> None:
        """Make bytes [0, end) of WAL file ``name`` durable, sharing fsyncs.

        Each sync records in SYNCED how far the file was durable after its
        fdatasync: the WRITTEN mark it read *before* syncing (every frame
        below it was written by then). A writer whose frames end below SYNCED
        of its own epoch was covered by someone else's sync and returns at
        once; a mark from before a cut has another epoch and covers nothing.
        Concurrent syncs may leave a lower SYNCED than the highest: both marks
        are hints for in-flight writers only, and a stale one costs an fsync.
        """
        synced = self._synced.read()
        if synced is not None and synced.reaches(name, epoch, end):
            return
        written = self._written.read()
        if written is not None and written.reaches(name, epoch, end):
            covered, head = written.offset, written.head_seq
        else:
            covered = end
        os.fdatasync(fd)
        self._synced.write(Mark(name, covered, epoch, head))

    def _cut_wal(self, path: Path, end: int) -> None:
        """Under LOCK: cut the active WAL file back to ``end`` (a torn or failed write).

        A sync in flight may yet record in SYNCED that it covered bytes being
        cut; so the cut starts a new epoch first, and no later write into the
        cut range can take that mark as its own.
        """
        self._epoch = _new_epoch()
        self._written.write(Mark(path.name, end, self._epoch, self._head_seq, self._head_time_us))
        with open(path, "r+b") as fh:
            fh.truncate(end)
            os.fsync(fh.fileno())
        self._allocated.pop(path.name, None)

    # -------------------------------------------------------------- seal

    def seal(self) -> list[manifest.ManifestEntry]:
        """Move every WAL record into Parquet segments. Idempotent; appends may
        continue meanwhile (the WAL is rotated first, under LOCK)."""
        with self._seal_lock:
            with self._lock, self._ids_lock:
                pending = self._rotate()
            entries = []
            for name in pending:
                entry = self._seal_wal_file(name)
                if entry is not None:
                    entries.append(entry)
                # Under LOCK, so no appender's view of wal/ changes while it works.
                with self._lock, self._ids_lock:
                    self._drop_wal_file(name)
            return entries

    def _drop_wal_file(self, name: str) -> None:
        """Delete a WAL file whose records are all committed in the MANIFEST."""
        (self.wal_dir / name).unlink()
        fsync_dir(self.wal_dir)
        self._scanned.pop(name, None)

    def _rotate(self) -> list[str]:
        """Under LOCK: start a fresh active WAL file if the current one has
        records; return the files to seal (all but the active one)."""
        self._sync_tail()
        names = self.wal_names()
        end = self._scanned.get(names[-1], 0)
        if end > 0:
            os.truncate(self.wal_dir / names[-1], end)  # its preallocated zeros
            # Durable before a file named after the next seq exists: that name
            # claims every seq below it was written (see _check_complete).
            os.fdatasync(self._active_fd(names[-1]))
            fresh = wal_name(self._head_seq + 1)
            # before the file exists: see _sync_tail
            self._written.write(Mark(fresh, 0, _new_epoch(), self._head_seq, self._head_time_us))
            (self.wal_dir / fresh).touch()
            fsync_dir(self.wal_dir)
            names.append(fresh)
        return names[:-1]

    def _seal_wal_file(self, name: str) -> manifest.ManifestEntry | None:
        path = self.wal_dir / name
        data = path.read_bytes()
        result = framing.scan(data)
        if result.bad_at is not None:
            raise CorruptionError(str(path), result.bad_at, result.resumes_at, "bad frame in a rotated WAL file")
        m = self.read_manifest()
        head = m.entries[-1].last_seq if m.entries else 0
        rows = [row for p in result.payloads for row in batch.segment_rows(p) if row["seq"] > head]
        entry = None
        if rows:
            if rows[0]["seq"] != head + 1:
                raise CorruptionError(str(path), 0, None, f"WAL starts at seq {rows[0]['seq']}, log head is {head}")
            entry = self._commit_segment(rows, m)
        return entry

    def _commit_segment(self, rows: list[dict], m: manifest.ManifestLines) -> manifest.ManifestEntry:
        """Write rows (content + seq, recorded_at µs, content_hash, size; in seq
        order) as segment files and commit them with a MANIFEST entry."""
        groups: dict[tuple[str, int], list[dict]] = {}
        for row in rows:
            groups.setdefault((row["type"], row["v"]), []).append(row)
        tables = {key: codec.rows_to_table(event_class(*key), grp) for key, grp in groups.items()}
        return self._commit_tables(tables, m)

    def _commit_tables(self, tables: dict[tuple[str, int], pa.Table], m: manifest.ManifestLines) -> manifest.ManifestEntry:
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
            files = [self._write_segment_file(*jobs[0])]
        else:  # compression and hashing release the GIL: big commits use every core
            files = list(_segment_writers().map(lambda job: self._write_segment_file(*job), jobs))
        fsync_dir(self.segment_dir)
        self.segments.written(files)  # hashed as they were written: readers need not hash them again
        chain = bytes.fromhex(m.entries[-1].chain) if m.entries else bytes(32)
        for leaf in leaves:
            chain = hashlib.sha256(chain + leaf).digest()
        entry = manifest.seal_entry(
            manifest.ManifestEntry(
                n=len(m.entries) + 1,
                first_seq=first,
                last_seq=last,
                min_recorded_at=min(times),
                max_recorded_at=max(times),
                files=files,
                merkle_root=codec.merkle_root(leaves).hex(),
                chain=chain.hex(),
                sealed_at=datetime.now(timezone.utc).isoformat(timespec="microseconds"),
                prev=m.entries[-1].hash if m.entries else manifest.GENESIS,
            )
        )
        manifest.append(self.manifest_path, entry, m.committed_size)
        self._committed.write(Mark("", 0, 0, last, max(times)))
        return entry

    def _write_segment_file(self, fname: str, type_name: str, v: int, table: pa.Table) -> manifest.SegmentFile:
        """Write the file under a temp name (Arrow writes it without the GIL), hash it
        block by block from the page cache, fsync and rename.

        Encoding into memory first cost more than reading back: the growing buffer
        is copied on every doubling and its fresh pages zeroed."""
        final = self.segment_dir / fname
        tmp = self.segment_dir / (fname + ".tmp")
        # Dictionary-encoding unique blobs (transcript lines, responses), or min/max
        # statistics over them, only costs time;
        # zstd level 1 compresses this text about as well as the default level, faster.
        not_blobs = [f.name for f in table.schema if not pa.types.is_large_binary(f.type)]
        try:
            with pa.OSFile(str(tmp), "wb") as sink:
                pq.write_table(table, sink, compression="zstd", compression_level=1, row_group_size=256 * 1024,
                               use_dictionary=not_blobs, write_statistics=not_blobs)
            size, whole, blocks = _hash_and_sync(tmp)
            os.replace(tmp, final)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            if is_full(exc):
                raise full_error(final, exc) from None
            raise
        return manifest.SegmentFile(
            name=fname, type=type_name, v=v, rows=table.num_rows, bytes=size,
            sha256=whole, block_sha256=blocks,
        )

    # --------------------------------------------------------- bulk load

    def append_table(self, type_name: str, table: pa.Table) -> list[Ack]:
        """Bulk-load events of one type; see :meth:`append_tables`."""
        return self.append_tables({type_name: table})

    def append_tables(self, tables: dict[str, pa.Table]) -> list[Ack]:
        """Bulk-load events straight into one segment commit (no WAL): all or nothing.

        Each table has a ``stream`` column, optionally ``event_id``, and its
        type's fields. Seqs follow the dict's order, then row order. Validation
        and hashing run over Arrow columns; no Event objects are built.

        Events whose event_id is already recorded with identical content are
        skipped (duplicate Acks); with other content, ConflictingEvent.
        """
        return self.append_prepared(prepare_tables(tables))

    def append_prepared(self, prepared: PreparedTables) -> list[Ack]:
        """:meth:`append_tables` for tables already validated and hashed by
        :func:`prepare_tables` (which a pipeline runs on another thread while
        this commits the previous batch)."""
        parts = prepared.parts
        if not parts:
            return []
        ids = [eid for p in parts for eid in p.content.column("event_id").to_pylist()]
        hashes = [h for p in parts for h in p.hashes]
        n = len(ids)
        given = any(p.ids_given for p in parts)
        if given:
            self._prefetch_ids(ids)
        with self._seal_lock, self._lock, self._ids_lock:
            for name in self._rotate():
                self._seal_wal_file(name)
                self._drop_wal_file(name)
            self._manifest = None
            self._sync_tail()
            existing = self._existing(ids, hashes.__getitem__) if given else {}
            aliases = self._aliases(ids, hashes.__getitem__) if given else {}
            seq = self._head_seq
            acks: list[Ack] = []
            fresh: list[int] = []
            for i, eid in enumerate(ids):
                if i in existing:
                    acks.append(Ack(existing[i], eid, True))
                elif i in aliases:
                    acks.append(Ack(acks[aliases[i]].seq, eid, True))
                else:
                    seq += 1
                    acks.append(Ack(seq, eid))
                    fresh.append(i)
            if fresh:
                now = _now_us()
                out: dict[tuple[str, int], pa.Table] = {}
                start = 0
                keep = set(fresh)
                for cls, schema, content, sizes, part_hashes, _ in parts:
                    rows = [i for i in range(content.num_rows) if start + i in keep]
                    if rows:
                        # take() copies every buffer (slow for big blobs): only when rows are dropped
                        t = content if len(rows) == content.num_rows else content.take(pa.array(rows, pa.int64()))
                        t = t.append_column("seq", pa.array([acks[start + i].seq for i in rows], pa.int64()))
                        t = t.append_column("recorded_at", pa.array([now] * len(rows), pa.timestamp("us", tz="UTC")))
                        t = t.append_column("content_hash", pa.array([part_hashes[i] for i in rows], pa.binary(32)))
                        t = t.append_column("size", pa.array([sizes[i] for i in rows], pa.int64()))
                        key = (cls.type_name(), cls.VERSION)
                        t = t.select(schema.names).cast(schema)
                        out[key] = pa.concat_tables([out[key], t]) if key in out else t
                    start += content.num_rows
                m = self._refresh_manifest()
                self._commit_tables(out, m)  # each table's rows are in seq order already
                self._head_seq = seq
                self._head_time_us = now
                if self._ids is not None:
                    self._ids.add([ids[i] for i in fresh], [acks[i].seq for i in fresh])
            assert len(acks) == n
            return acks

    # ----------------------------------------------------------- reading

    def read_wal(self) -> tuple[manifest.ManifestLines, list[WalRecord]]:
        """A consistent (MANIFEST, WAL tail) pair, without taking LOCK.

        A seal may commit and delete a WAL file between the two reads; the
        result would then have a gap, so it is retried.
        """
        for _ in range(50):
            synced = self._synced.read()  # before the log: what it vouches for is in what is read next
            acknowledged = self.acknowledged_head(synced)
            m = self.read_manifest()
            head = m.entries[-1].last_seq if m.entries else 0
            records: list[WalRecord] = []
            try:
                names = self.wal_names()
                for name in names:
                    path = self.wal_dir / name
                    result = framing.scan(path.read_bytes())
                    if result.corrupt:
                        raise CorruptionError(
                            str(path), result.bad_at, result.resumes_at, "damaged WAL frame followed by intact frames"
                        )
                    if result.torn_tail:
                        check_not_synced(path, result.end, synced)
                    records.extend(r for r in decode_records(result.payloads) if r.seq > head)
            except FileNotFoundError:
                continue
            try:
                if not all(r.seq == head + 1 + i for i, r in enumerate(records)):
                    raise CorruptionError(str(self.manifest_path), m.committed_size, None,
                                          f"the MANIFEST ends at seq {head} but the WAL goes on from seq "
                                          f"{records[0].seq}: committed MANIFEST entries went missing")
                self._check_complete(records[-1].seq if records else head, acknowledged, names, head)
            except CorruptionError:
                if self.read_manifest().committed_size != m.committed_size:
                    continue  # a seal committed meanwhile: read again
                raise
            return m, records
        raise StoreError(f"{self.path}: could not read a consistent snapshot; the log is changing too fast")

    def snapshot(self):  # -> Snapshot (import cycle avoided)
        from chronicle.store.reader import Snapshot

        m, records = self.read_wal()
        return Snapshot(self, m.entries, records)


def check_not_synced(path: Path, bad_at: int, synced: Mark | None) -> None:
    """A bad frame at ``bad_at`` is a torn tail only if no fdatasync covered it."""
    if synced is not None and synced.wal == path.name and synced.offset > bad_at:
        raise CorruptionError(str(path), bad_at, synced.offset,
                              "damaged WAL frame below the acknowledged (fdatasynced) mark: acknowledged events "
                              "would be lost by cutting it off; left in place")


class PreparedPart(NamedTuple):
    """One event type's rows of a prepared bulk load."""

    cls: type[Event]
    schema: pa.Schema
    content: pa.Table
    sizes: list[int]
    hashes: list[bytes]
    ids_given: bool


class PreparedTables(NamedTuple):
    """Tables validated and content-hashed for :meth:`EventLog.append_prepared`."""

    parts: list[PreparedPart]


def prepare_tables(tables: dict[str, pa.Table]) -> PreparedTables:
    """Validate and hash tables for a bulk load. Takes no lock and touches no file,
    so it can run beside a commit (hashing releases the GIL)."""
    parts = []
    for type_name, table in tables.items():
        if table.num_rows == 0:
            continue
        cls = event_class(type_name)
        schema = codec.arrow_schema(cls)
        content = content_table(cls, schema, table)
        hashes, sizes = codec.content_hashes_from_table(content)
        parts.append(PreparedPart(cls, schema, content, sizes, hashes, "event_id" in table.column_names))
    return PreparedTables(parts)


def content_table(cls: type[Event], schema: pa.Schema, table: pa.Table) -> pa.Table:
    """``table`` checked against ``cls`` and completed to its content columns
    (envelope without seq, recorded_at, content_hash, size); InvalidEvent if not."""
    n = table.num_rows
    cols = set(table.column_names)
    missing = [f.name for f in schema if f.name not in codec.ENVELOPE_COLUMNS and not f.nullable and f.name not in cols]
    if "stream" not in cols:
        missing.insert(0, "stream")
    if missing:
        raise InvalidEvent(f"{cls.type_name()}: missing column(s) {', '.join(missing)}", field=missing[0])
    unknown = cols - set(schema.names)
    if unknown:
        raise InvalidEvent(f"{cls.type_name()}: unknown column(s) {', '.join(sorted(unknown))}", field=sorted(unknown)[0])
    arrays = {
        "event_id": table.column("event_id") if "event_id" in cols else pa.array([new_event_id() for _ in range(n)], pa.string()),
        "type": pa.array([cls.type_name()] * n, pa.string()),
        "v": pa.array([cls.VERSION] * n, pa.int32()),
        "stream": table.column("stream"),
    }
    for f in schema:
        if f.name in codec.ENVELOPE_COLUMNS:
            continue
        arrays[f.name] = table.column(f.name) if f.name in cols else pa.nulls(n, f.type)
    names = [f.name for f in schema if f.name not in ("seq", "recorded_at", "content_hash", "size")]
    target = pa.schema([schema.field(nm) for nm in names])
    try:
        out = pa.table([arrays[nm] for nm in names], names=names).cast(target)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
        raise InvalidEvent(f"{cls.type_name()}: {exc}") from None
    for f in target:
        if not f.nullable and out.column(f.name).null_count:
            raise InvalidEvent(f"{cls.type_name()}: column {f.name!r} has nulls", field=f.name)
    import pyarrow.compute as pc

    if pc.any(pc.equal(out.column("stream"), "")).as_py():
        raise InvalidEvent(f"{cls.type_name()}: column 'stream' has empty values", field="stream")
    for name in codec.json_fields(cls):
        for i, text in enumerate(out.column(name).to_pylist()):
            try:
                if text is not None:
                    msgspec.json.decode(text)
            except (msgspec.DecodeError, RecursionError) as exc:
                raise InvalidEvent(f"{cls.type_name()}: row {i}: column {name!r} is not valid JSON: {exc}",
                                   index=i, field=name) from None
    return out


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
