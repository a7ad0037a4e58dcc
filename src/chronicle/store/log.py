"""The event log: durable appends through the WAL, seals into Parquet
segments, bulk loads straight to segments, and consistent snapshots.

``EventLog`` composes the parts, one job each: ``storage`` (the committed
state: MANIFEST commits and segment blobs), ``wal_writer`` (the active WAL
file, the marks, group commit), ``id_index`` (deduplication across writers),
``segment_writer`` (sealing into segments), ``bulk`` (validating tables) and
``redaction`` (values taken out of sealed events, hashes kept).
Which lock guards what is in ``locks``.

On disk (``data/log``)::

    wal/<first seq>.wal     one frame per appended batch (see framing, batch); the newest is active
    segments/*.parquet      sealed events, one file per (type, version) per commit; a large
                            table as several (.p0, .p1, ...: row ranges in seq order); a file
                            a redaction rewrote as .rN (N its MANIFEST line)
    MANIFEST                hash-chained JSON lines; the commit point of a seal or a redaction
    LOCK                    held briefly by every append (seq assignment + write)
    SEAL.lock               held by whoever writes the MANIFEST (seal, bulk load, redaction)
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
``id_index``). Reading every other
writer's frames under LOCK made each append cost O(writers) there; reading
the whole log for a new writer's id index under it stalled every other writer
for as long (about a second per two million events).

Group commit: a writer assigns seqs and writes its frames under LOCK, releases
it, then makes them durable in ``WalWriter.sync``: one fdatasync covers every byte
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

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec
import pyarrow as pa

from chronicle.events import Event
from chronicle.store import batch, codec, framing, manifest, redaction
from chronicle.store.acks import Ack, FreshAcks
from chronicle.store.batch import WalRecord, new_event_id
from chronicle.store.bulk import PreparedTables, prepare_tables
from chronicle.store.errors import CorruptionError, NotAWorkspace, StoreError
from chronicle.store.fsutil import FileLock, fsync_dir, write_durably
from chronicle.store.id_index import IdIndex, aliases, decode_records
from chronicle.store.ids import ID_HASHES
from chronicle.store.locks import HELD, Held
from chronicle.store.marks import Mark
from chronicle.store.segment_checks import SegmentChecks
from chronicle.store.segment_writer import SegmentWriter
from chronicle.store.storage import LocalStorage, Storage
from chronicle.store.wal_writer import WalWriter, check_not_synced, wal_name

if TYPE_CHECKING:
    from chronicle.store.reader import Snapshot

__all__ = ["Ack", "EventLog", "PreparedTables", "prepare_tables", "new_event_id"]


def _now_us() -> int:
    return time.time_ns() // 1000


def _acks(ids: list[str], existing: dict[int, int], repeats: dict[int, int], first: int) -> tuple[list[Ack], list[int]]:
    """One Ack per id: an id already recorded at its seq, one repeated in the batch at its first
    occurrence's, the rest new from seq ``first`` on (their indexes returned too). Every write path's."""
    acks: list[Ack] = []
    fresh: list[int] = []
    for i, eid in enumerate(ids):
        if i in existing:
            acks.append(Ack(existing[i], eid, True))
        elif i in repeats:
            acks.append(Ack(acks[repeats[i]].seq, eid, True))
        else:
            acks.append(Ack(first + len(fresh), eid))
            fresh.append(i)
    return acks, fresh


class EventLog:
    """One append-only log directory. Safe to use from several processes at once."""

    def __init__(self, path: Path, storage: Storage | None = None):
        """The log whose writer state (WAL, marks, locks) is in folder ``path`` and whose
        committed state (MANIFEST, segments) is in ``storage`` (default: the same folder)."""
        self.path = Path(path)
        if not (self.path / "MANIFEST").is_file():
            raise NotAWorkspace(f"{self.path}: no chronicle log here (run `chronicle init`)")
        self.storage: Storage = LocalStorage(self.path) if storage is None else storage
        self.wal_dir = self.path / "wal"
        self.segment_dir = self.path / "segments"
        self.manifest_path = self.path / "MANIFEST"
        self._lock = FileLock(self.path / "LOCK")
        self._seal_lock = FileLock(self.path / "SEAL.lock")
        #: Readers take a segment's path from here: its bytes checked against the MANIFEST.
        self.segments = SegmentChecks(self.storage, self.path / "VERIFIED")
        self._manifest: manifest.ManifestLines | None = None  # as of _manifest_stamp; read under LOCK
        self._manifest_stamp: tuple[int, int] | None = None
        self.wal = WalWriter(self.path, self.read_manifest)
        self.id_index = IdIndex(self.wal, self.segments, self.path / ID_HASHES, self.read_manifest)
        self.segment_writer = SegmentWriter(self.storage, self.segments, self.wal.committed, self.read_manifest)

    # ------------------------------------------------------------------ setup

    @classmethod
    def init(cls, path: Path, storage: Storage | None = None) -> EventLog:
        path = Path(path)
        for sub in ("wal", "segments"):
            (path / sub).mkdir(parents=True, exist_ok=True)
        if not (path / "MANIFEST").exists():
            write_durably(path / "MANIFEST", b"")
            (path / "wal" / wal_name(1)).touch()
            fsync_dir(path / "wal")
        fsync_dir(path)
        return cls(path, storage)

    def close(self) -> None:
        self.storage.close()
        self.wal.close()
        for held in (self._lock, self._seal_lock):
            held.close()

    def __enter__(self) -> EventLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def locked(self) -> Iterator[Held]:
        """LOCK, then this process's id index lock (see ``locks``)."""
        with self._lock, self.id_index.lock:
            yield HELD

    # -------------------------------------------------------- shared state

    def read_manifest(self) -> manifest.ManifestLines:
        return manifest.parse(self.manifest_path, self.storage.read_commits())

    def _current_manifest(self, held: Held) -> manifest.ManifestLines:
        """Under LOCK: the MANIFEST, read again only when a commit landed since."""
        stamp = self.storage.commits_stamp()
        if self._manifest is None or stamp != self._manifest_stamp:
            self._manifest = self.read_manifest()
            self._manifest_stamp = stamp
        return self._manifest

    def _catch_up(self, held: Held) -> manifest.ManifestLines:
        m = self._current_manifest(held)
        self.wal.sync_tail(held, m)
        return m

    def wal_bytes(self) -> int:
        """Bytes of frames in WAL files (unsealed events), for deciding when to seal."""
        return self.wal.wal_bytes()

    def wal_names(self) -> list[str]:
        return self.wal.wal_names()

    def synced_mark(self) -> Mark | None:
        return self.wal.synced_mark()

    def acknowledged_head(self, synced: Mark | None = None) -> int:
        """The highest seq the SYNCED and COMMITTED hints say was acknowledged
        (read them before reading the log, so that what they vouch for is there)."""
        return self.wal.acknowledged_head(synced)

    def check_complete(self, head: int, acknowledged: int, sealed_head: int) -> None:
        """CorruptionError when acknowledged events are missing from the log whose
        MANIFEST ends at ``sealed_head`` and whose MANIFEST + WAL end at ``head``."""
        self.wal.check_complete(head, acknowledged, sealed_head)

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

        repeats = aliases(ids, content_hash)
        if any_given:
            self.id_index.prefetch(ids)
        acks: Sequence[Ack]
        with self.locked() as held:
            m = self._catch_up(held)
            existing = self.id_index.existing(held, m, ids, content_hash) if any_given else {}
            fresh: Sequence[int] = range(len(ids))
            if existing or repeats:
                acks, fresh = _acks(ids, existing, repeats, self.wal.head_seq + 1)
                if not fresh:
                    # They repeat events that may be another writer's, not yet synced (rare: sync under LOCK).
                    self.wal.sync_held(held)
                    return acks
                fresh_events = [events[i] for i in fresh]
                encoded = batch.encode_events(fresh_events, batch.check_types(fresh_events))
            # as the clock reads: seqs are the order, times are never carried forward
            written = self.wal.write(held, encoded, len(fresh), _now_us())
            fresh_ids = ids if len(fresh) == len(ids) else [ids[i] for i in fresh]
            self.id_index.added(held, fresh_ids, range(written.first, written.first + len(fresh)), written)
            if not existing and not repeats:
                acks = FreshAcks(written.first, ids)
        self.wal.sync(written)
        return acks

    # -------------------------------------------------------------- seal

    def seal(self) -> list[manifest.ManifestEntry]:
        """Move every WAL record into Parquet segments. Idempotent; appends may
        continue meanwhile (the WAL is rotated first, under LOCK)."""
        with self._seal_lock:
            with self.locked() as held:
                pending = self.wal.rotate(held)
            entries = []
            for name in pending:
                entry = self.segment_writer.seal_wal_file(self.wal_dir / name)
                if entry is not None:
                    entries.append(entry)
                # Under LOCK, so no appender's view of wal/ changes while it works.
                with self.locked() as held:
                    self.wal.drop_file(held, name)
            return entries

    def _seal_held(self, held: Held) -> None:
        """Under SEAL.lock and LOCK: every WAL record into segments, the WAL files dropped."""
        for name in self.wal.rotate(held):
            self.segment_writer.seal_wal_file(self.wal_dir / name)
            self.wal.drop_file(held, name)
        self._manifest = None

    # ------------------------------------------------------------ redact

    def redact(self, plan: Callable[[Snapshot], list[redaction.Change]], by: str,
               findings: list[str]) -> manifest.Redaction | None:
        """Replace values of recorded events, the log still verifiable (see ``redaction``).

        Under SEAL.lock and LOCK throughout (appends wait): every WAL event is sealed
        (the WAL files that held the values are deleted), then ``plan`` says what to
        change, from a snapshot no append can add to; None when it says nothing."""
        with self._seal_lock, self.locked() as held:
            self._seal_held(held)
            m = self._current_manifest(held)
            self.storage.remove(redaction.orphans(self.storage, m))
            changes = plan(self.snapshot())
            done = None
            if changes:
                done = redaction.commit(self.storage, self.segments, self.segment_writer, m, changes, by, findings)
            self._manifest = None
        redaction.finish(self.storage, self.read_manifest())
        return done

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
            self.id_index.prefetch(ids)
        with self._seal_lock, self.locked() as held:
            self._seal_held(held)  # the WAL's events first: seqs stay in order
            m = self._catch_up(held)
            existing = self.id_index.existing(held, m, ids, hashes.__getitem__) if given else {}
            repeats = aliases(ids, hashes.__getitem__) if given else {}
            acks, fresh = _acks(ids, existing, repeats, self.wal.head_seq + 1)
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
                # each table's rows are in seq order already
                self.segment_writer.commit_tables(out, self._current_manifest(held))
                self.wal.head_seq = acks[fresh[-1]].seq
                self.wal.head_time_us = now
                self.id_index.added(held, [ids[i] for i in fresh], [acks[i].seq for i in fresh])
            assert len(acks) == n
            return acks

    # ----------------------------------------------------------- reading

    def read_wal(self) -> tuple[manifest.ManifestLines, list[WalRecord]]:
        """A consistent (MANIFEST, WAL tail) pair, without taking LOCK.

        A seal may commit and delete a WAL file between the two reads; the
        result would then have a gap, so it is retried.
        """
        for _ in range(50):
            synced = self.wal.synced_mark()  # before the log: what it vouches for is in what is read next
            acknowledged = self.wal.acknowledged_head(synced)
            m = self.read_manifest()
            head = m.entries[-1].last_seq if m.entries else 0
            records: list[WalRecord] = []
            try:
                names = self.wal.wal_names()
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
                self.wal.check_complete_names(records[-1].seq if records else head, acknowledged, names, head)
            except CorruptionError:
                if self.read_manifest().committed_size != m.committed_size:
                    continue  # a seal committed meanwhile: read again
                raise
            return m, records
        raise StoreError(f"{self.path}: could not read a consistent snapshot; the log is changing too fast")

    def snapshot(self) -> Snapshot:
        from chronicle.store.reader import Snapshot

        m, records = self.read_wal()
        if m.superseded:  # a redaction killed after its commit left the values it removed
            redaction.finish(self.storage, m)
        return Snapshot(self.segments, m.entries, records, redactions=m.redactions)
