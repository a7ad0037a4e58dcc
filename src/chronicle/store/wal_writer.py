"""The WAL writer: the active WAL file, the marks writers share, and group commit.

One per ``EventLog``. What it changes is shared with the other writers of the
log and with this process's threads, so every method that reads or changes
it takes a ``Held`` (proof that the caller holds LOCK; see ``locks``) except
where its docstring says otherwise: ``sync`` runs outside LOCK (group commit),
and the descriptor bookkeeping has its own guard. See ``log`` for the file
formats, the marks and why little happens under LOCK.
"""

from __future__ import annotations

import os
import secrets
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from chronicle.events import ClockStep
from chronicle.store import batch, codec, framing, manifest
from chronicle.store.batch import new_event_id
from chronicle.store.errors import CorruptionError
from chronicle.store.fsutil import fsync_dir, full_error, is_full, pwrite_all
from chronicle.store.head import span
from chronicle.store.locks import Held
from chronicle.store.marks import Mark, MarkFile

WAL_SUFFIX = ".wal"
#: The active WAL file is zero-filled this far ahead of its frames.
PREALLOCATE = 1 << 20
#: A frame at least this large grows the file with its own write rather than
#: into zeros written ahead: next to such a frame the journal commit is small,
#: and zero-filling first would write (and flush) its bytes twice.
GROWS_BY_ITSELF = 64 << 10
#: Bytes read past the WRITTEN mark to see whether frames follow it.
_PROBE = 4096
#: A clock this far behind the log's latest time is recorded as a ClockStep.
CLOCK_SLACK_US = 1_000_000


def _new_epoch() -> int:
    return secrets.randbits(63)


def wal_name(first_seq: int) -> str:
    return f"{first_seq:020d}{WAL_SUFFIX}"


class Written(NamedTuple):
    """Where an append's frame went (for its sync, outside LOCK)."""

    fd: int
    name: str
    offset: int
    end: int
    epoch: int
    first: int
    last: int


class WalWriter:
    def __init__(self, log_path: Path, read_manifest: Callable[[], manifest.ManifestLines]):
        self.wal_dir = log_path / "wal"
        self._read_manifest = read_manifest
        self._manifest_name = str(log_path / "MANIFEST")
        self._written = MarkFile(log_path / "WRITTEN")
        self._synced = MarkFile(log_path / "SYNCED")
        self.committed = MarkFile(log_path / "COMMITTED")
        #: The head as of this process's last look (under LOCK): last seq and its time.
        self.head_seq = 0
        self.head_time_us = 0
        #: WAL file name -> offset up to which this process has read (or written) its frames.
        self.scanned: dict[str, int] = {}
        self.epoch = 0  # of the active WAL file, as of this process's last look (see marks)
        self.fd: int | None = None
        self.fd_name: str | None = None
        # Descriptors whose writes await their fdatasync (outside LOCK) -> how many; one of them
        # replaced meanwhile as the active file is closed only once the last of those syncs ends,
        # since a descriptor number closed early could be reused and the sync made on another file.
        self._fd_guard = threading.Lock()
        self._syncs_due: dict[int, int] = {}
        self._retired: set[int] = set()
        # WAL file name -> size it was zero-filled to, as this process last saw it.
        self._allocated: dict[str, int] = {}

    def close(self) -> None:
        if self.fd is not None:
            self.retire(self.fd)
            self.fd = None
            self.fd_name = None
        for held in (self._written, self._synced, self.committed):
            held.close()

    def written_mark(self) -> Mark | None:
        """The WRITTEN mark (read without LOCK by the id index's prefetch)."""
        return self._written.read()

    def write(self, held: Held, encoded: batch.EncodedBatch, count: int, now: int) -> Written:
        """Write ``count`` ``encoded`` events as one frame at the head (and a ClockStep after them
        when this clock reads earlier than the log's latest time); not yet durable."""
        name, fd = self.fd_name, self.fd
        assert name is not None and fd is not None  # set by sync_tail
        offset = self.scanned.get(name, 0)
        first = self.head_seq + 1
        frame = framing.encode_frame(batch.payload(first, now, encoded))
        last = first + count - 1
        if now < self.head_time_us - CLOCK_SLACK_US:
            frame += self._clock_step_frame(last + 1, now)
            last += 1
        if len(frame) < GROWS_BY_ITSELF:
            self._preallocate(fd, name, offset + len(frame))
        try:
            pwrite_all(fd, frame, offset)
        except OSError as exc:
            self.cut(held, self.wal_dir / name, offset)
            if is_full(exc):
                raise full_error(self.wal_dir / name, exc) from None
            raise
        end = offset + len(frame)
        self.scanned[name] = end
        self.head_seq = last
        self.head_time_us = now
        self._written.write(Mark(name, end, self.epoch, last, now))
        self._sync_due(fd)
        return Written(fd, name, offset, end, self.epoch, first, last)

    def sync(self, w: Written) -> None:
        """Outside LOCK: make ``w`` durable (group commit), then release its descriptor."""
        try:
            self._group_sync(w.fd, w.name, w.end, w.epoch, w.last)
        finally:
            self._sync_done(w.fd)

    def sync_held(self, held: Held) -> None:
        """Under LOCK: make everything written so far durable (rare: an append of only duplicates
        that may be another writer's events not yet synced)."""
        name, fd = self.fd_name, self.fd
        assert name is not None and fd is not None  # set by sync_tail
        self._group_sync(fd, name, self.scanned.get(name, 0), self.epoch, self.head_seq)

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

    def sync_tail(self, held: Held, m: manifest.ManifestLines) -> None:
        """Under LOCK: catch up with what other processes wrote, and cut off a
        torn tail left by a writer that died mid-write (it was never acked)."""
        sealed_head = m.entries[-1].last_seq if m.entries else 0
        sealed_time = m.entries[-1].max_recorded_at if m.entries else 0
        if sealed_head > self.head_seq:
            self.head_seq, self.head_time_us = sealed_head, sealed_time
        mark = self._written.read()
        if mark is not None and mark.wal == self.fd_name:
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
            self.scanned = {n: off for n, off in self.scanned.items() if n in names}
            if not names:
                names = [wal_name(self.head_seq + 1)]
                (self.wal_dir / names[0]).touch()
                fsync_dir(self.wal_dir)
        # A cut below (_cut_wal) starts a new epoch; so does a mark that cannot be trusted.
        self.epoch = mark.epoch if mark is not None and mark.wal == names[-1] else _new_epoch()
        synced = self._synced.read()
        acknowledged = self.acknowledged_head(synced)
        for i, name in enumerate(names):
            start = self.scanned.get(name, 0)
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
                if first != self.head_seq + 1:
                    raise CorruptionError(str(self.wal_dir / name), start, None,
                                          f"WAL seq {first} does not follow {self.head_seq}")
                self.head_seq = first + count - 1
                self.head_time_us = rec  # the latest event's time, not the greatest: a clock step is not carried
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
                self.cut(held, self.wal_dir / name, start + result.end)
            self.scanned[name] = start + result.end
        self.check_complete_names(self.head_seq, acknowledged, names if every_file else [], sealed_head)

    def synced_mark(self) -> Mark | None:
        return self._synced.read()

    def check_complete(self, head: int, acknowledged: int, sealed_head: int) -> None:
        """CorruptionError when acknowledged events are missing from the log whose
        MANIFEST ends at ``sealed_head`` and whose MANIFEST + WAL end at ``head``."""
        self.check_complete_names(head, acknowledged, self.wal_names(), sealed_head)

    def acknowledged_head(self, synced: Mark | None = None) -> int:
        """The highest seq the SYNCED and COMMITTED hints say was acknowledged
        (read them before reading the log, so that what they vouch for is there)."""
        if synced is None:
            synced = self._synced.read()
        committed = self.committed.read()
        return max(synced.head_seq if synced is not None else 0, committed.head_seq if committed is not None else 0)

    def check_complete_names(self, head: int, acknowledged: int, names: list[str], sealed_head: int) -> None:
        """CorruptionError when acknowledged events are missing from MANIFEST + WAL."""
        if acknowledged > head:
            raise CorruptionError(
                self._manifest_name, self._read_manifest().committed_size, None,
                f"seqs {head + 1}..{acknowledged} were acknowledged but are in neither the MANIFEST nor the WAL "
                "(a MANIFEST entry or WAL frames went missing); writers will not reuse them",
            )
        if names and int(names[0][: -len(WAL_SUFFIX)]) > sealed_head + 1:
            raise CorruptionError(
                self._manifest_name, self._read_manifest().committed_size, None,
                f"the MANIFEST ends at seq {sealed_head} but the WAL starts at seq {int(names[0][: -len(WAL_SUFFIX)])}: "
                "committed MANIFEST entries went missing; writers will not reuse their seqs",
            )

    def _caught_up_by_mark(self, mark: Mark) -> bool:
        """Under LOCK: take the head from the WRITTEN mark of the active file
        instead of reading the frames others wrote below it, when nothing lies
        past it (a frame there was written by a writer that died before moving
        the mark; the caller's scan picks it up)."""
        if mark.offset < self.scanned.get(mark.wal, 0) or mark.head_seq < self.head_seq:
            return False
        past = os.pread(self.active_fd(mark.wal), _PROBE, mark.offset)
        if past.count(0) != len(past):
            return False
        self.scanned[mark.wal] = mark.offset
        self.head_seq = mark.head_seq
        self.head_time_us = mark.head_time_us
        self.epoch = mark.epoch
        return True

    def _scan_active(self, name: str, start: int, mark: Mark | None) -> framing.Scan:
        """Frames of the active WAL file from ``start`` on.

        Other writers' frames end at the WRITTEN mark, so reading to the mark
        plus a probe usually suffices; a frame past the probe (its writer died
        before moving the mark) or a damaged tail sends us to read the rest.
        """
        fd = self.active_fd(name)
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

    def active_fd(self, name: str) -> int:
        if self.fd_name != name:
            if self.fd is not None:
                self.retire(self.fd)
            self.fd = os.open(self.wal_dir / name, os.O_RDWR | os.O_CLOEXEC)
            self.fd_name = name
        return self.fd

    def retire(self, fd: int) -> None:
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

    def _clock_step_frame(self, seq: int, now: int) -> bytes:
        """A frame holding one ClockStep at ``seq``: this writer's clock reads
        earlier than the log's latest time (see events/clock.py)."""
        step = ClockStep(stream="log:clock", event_id=new_event_id(),
                         latest_recorded_at=codec.from_micros(self.head_time_us), clock_at=codec.from_micros(now),
                         step_us=now - self.head_time_us, pid=os.getpid(), host=socket.gethostname())
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

    def cut(self, held: Held, path: Path, end: int) -> None:
        """Under LOCK: cut the active WAL file back to ``end`` (a torn or failed write).

        A sync in flight may yet record in SYNCED that it covered bytes being
        cut; so the cut starts a new epoch first, and no later write into the
        cut range can take that mark as its own.
        """
        self.epoch = _new_epoch()
        self._written.write(Mark(path.name, end, self.epoch, self.head_seq, self.head_time_us))
        with open(path, "r+b") as fh:
            fh.truncate(end)
            os.fsync(fh.fileno())
        self._allocated.pop(path.name, None)

    def drop_file(self, held: Held, name: str) -> None:
        """Delete a WAL file whose records are all committed in the MANIFEST."""
        (self.wal_dir / name).unlink()
        fsync_dir(self.wal_dir)
        self.scanned.pop(name, None)

    def rotate(self, held: Held) -> list[str]:
        """Under LOCK: start a fresh active WAL file if the current one has
        records; return the files to seal (all but the active one)."""
        self.sync_tail(held, self._read_manifest())
        names = self.wal_names()
        end = self.scanned.get(names[-1], 0)
        if end > 0:
            os.truncate(self.wal_dir / names[-1], end)  # its preallocated zeros
            # Durable before a file named after the next seq exists: that name
            # claims every seq below it was written (see _check_complete).
            os.fdatasync(self.active_fd(names[-1]))
            fresh = wal_name(self.head_seq + 1)
            # before the file exists: see _sync_tail
            self._written.write(Mark(fresh, 0, _new_epoch(), self.head_seq, self.head_time_us))
            (self.wal_dir / fresh).touch()
            fsync_dir(self.wal_dir)
            names.append(fresh)
        return names[:-1]

def check_not_synced(path: Path, bad_at: int, synced: Mark | None) -> None:
    """A bad frame at ``bad_at`` is a torn tail only if no fdatasync covered it."""
    if synced is not None and synced.wal == path.name and synced.offset > bad_at:
        raise CorruptionError(str(path), bad_at, synced.offset,
                              "damaged WAL frame below the acknowledged (fdatasynced) mark: acknowledged events "
                              "would be lost by cutting it off; left in place")
