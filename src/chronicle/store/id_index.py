"""The id index: every event_id in the log, for deduplication across writers.

One per ``EventLog``. Event ids are unique across every write path: an event
whose id is recorded with the same content is a duplicate (acknowledged at its
first seq), with other content a ``ConflictingEvent``. The index is read from
the segments (or the IDS cache of their hashes) and the WAL frames, mostly
*before* taking LOCK (``prefetch``): for a large log that takes seconds, which
every other writer would wait out. Under LOCK only what was written meanwhile
is caught up with, and usually not even that (``_search_unindexed``).

``lock`` keeps this process's threads apart: taken with LOCK (``Held``), and
alone by ``prefetch``.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path

import msgspec
import pyarrow as pa
import pyarrow.parquet as pq

from chronicle.store import batch, codec, framing, manifest
from chronicle.store.errors import ConflictingEvent
from chronicle.store.ids import EMPTY, EventIds, SealedIdHashes
from chronicle.store.locks import Held
from chronicle.store.segment_checks import SegmentChecks
from chronicle.store.wal_writer import WalWriter, Written

#: Bytes x ids a dedupe lookup searches in frames not yet indexed before it indexes them instead.
_SEARCH_BUDGET = 1 << 18


def decode_records(payloads: list[bytes]) -> list[batch.WalRecord]:
    return [r for p in payloads for r in batch.records(p)]


class IdIndex:
    def __init__(self, wal: WalWriter, segments: SegmentChecks, cache_path: Path,
                 read_manifest: Callable[[], manifest.ManifestLines]):
        self._wal = wal
        self._segments = segments
        self._cache_path = cache_path
        self._read_manifest = read_manifest
        self.lock = threading.Lock()
        self._ids: EventIds | None = None
        self._built = False  # _ids is whole (another thread may look while it is being built)
        self._keep_seqs = False  # from this process's first duplicate on (see EventIds)
        # _ids holds the event_ids of WAL frames up to _indexed: (file, offset), and of the
        # MANIFEST's first _ids_entries entries.
        self._ids_entries = 0
        self._indexed: tuple[str, int] = ("", 0)

    @property
    def loaded(self) -> bool:
        """Whether this process has read the log's ids (its first append with given ids does)."""
        return self._built

    @property
    def with_seqs(self) -> bool:
        """Whether the index keeps each id's seq (from this process's first duplicate on)."""
        return self._built and self._ids is not None and self._ids.seq_of is not None

    def knows(self, ids: list[str]) -> bool:
        """Whether the index, as loaded so far, holds any of ``ids``."""
        return self._built and self._ids is not None and not self._ids.isdisjoint(ids)

    def added(self, held: Held, ids: list[str], seqs: range | list[int], written: Written | None = None) -> None:
        """Under LOCK: ``ids`` were just recorded at ``seqs`` by this process (in ``written``'s frame)."""
        if self._ids is None:
            return
        self._ids.add(ids, seqs)
        if written is not None and self._indexed == (written.name, written.offset):
            self._indexed = (written.name, written.end)

    def load(self, held: Held, m: manifest.ManifestLines) -> EventIds:
        """Under LOCK: the event_ids of the whole log, up to the MANIFEST
        entries and WAL frames ``_ids_entries`` and ``_indexed`` name (built
        before LOCK by prefetch, or here when that did not run)."""
        if self._ids is None:
            self._build_ids(m, self._wal.fd_name, self._wal.scanned.get(self._wal.fd_name or "", 0))
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
            cache = SealedIdHashes.load(self._cache_path, [e.hash for e in m.entries]) or EMPTY
            self._ids.sealed = cache
            self._ids_entries = cache.entries
        uncovered: list[str] = []
        for entry in m.entries[self._ids_entries :]:
            for f in entry.files:
                t = pq.read_table(self._segments.path(f, entry.n), columns=columns)
                ids = t.column("event_id").to_pylist()
                self._ids.add(ids, t.column("seq").to_pylist() if "seq" in columns else ())
                if cache is not None:
                    uncovered += ids
        self._ids_entries = max(self._ids_entries, len(m.entries))
        if cache is not None and len(uncovered) * 8 >= len(cache.hashes):
            try:
                cache.extended(uncovered, len(m.entries), m.entries[-1].hash).save(self._cache_path)
            except OSError:
                pass  # a cache: the next writer tries again

    def _content_hashes(self, m: manifest.ManifestLines, seqs: set[int]) -> dict[int, bytes]:
        """content_hash of each of ``seqs`` (sealed from segments, unsealed from the WAL)."""
        import pyarrow.compute as pc  # not at import: it costs writers a tenth of a second at start

        sealed_head = m.entries[-1].last_seq if m.entries else 0
        found: dict[int, bytes] = {}
        for entry in m.entries:
            wanted = [s for s in seqs if entry.first_seq <= s <= entry.last_seq]
            if not wanted:
                continue
            for f in entry.files:
                t = pq.read_table(self._segments.path(f, entry.n), columns=["seq", "content_hash"])
                t = t.filter(pc.is_in(t.column("seq"), pa.array(wanted, pa.int64())))
                found.update(zip(t.column("seq").to_pylist(), t.column("content_hash").to_pylist()))
        if any(s > sealed_head for s in seqs):
            for name in self._wal.wal_names():
                data = (self._wal.wal_dir / name).read_bytes()[: self._wal.scanned.get(name, 0)]
                for rec in decode_records(framing.scan(data).payloads):
                    if rec.seq in seqs:
                        found[rec.seq] = codec.content_hash(rec.data)
        return found

    def _index_upto(self, name: str, end: int) -> None:
        """Add to ``_ids`` the event_ids of WAL frames from ``_indexed`` up to
        offset ``end`` of file ``name`` (frames there are whole: they lie below
        a WRITTEN mark, or in a rotated file). Holding ``lock``."""
        assert self._ids is not None
        cur, offset = self._indexed
        names = [name] if name == cur else [n for n in self._wal.wal_names() if cur <= n <= name]
        for n in names:
            start = offset if n == cur else 0
            if n == name and end <= start:
                break
            try:
                if n == self._wal.fd_name and n == name and self._wal.fd is not None:
                    data = os.pread(self._wal.fd, end - start, start)
                else:
                    with open(self._wal.wal_dir / n, "rb") as fh:
                        fh.seek(start)
                        data = fh.read(end - start if n == name else -1)
            except FileNotFoundError:  # sealed meanwhile: _load_ids reads its ids from the segments
                continue
            scan = framing.scan(data)
            self._ids.add(*batch.frame_ids(scan.payloads))
            self._indexed = (n, start + scan.end)

    def prefetch(self, ids: list[str]) -> None:
        """Before taking LOCK: index the frames others appended since this
        process last looked, so that under LOCK only the few written while it
        waited remain (see _search_unindexed); on first use, index the whole log.

        The whole log is read here, not under LOCK, because for a large log
        that takes seconds, which every other writer would wait out. What is
        sealed or written meanwhile is caught up with under LOCK (_load_ids,
        _search_unindexed).
        """
        mark = self._wal.written_mark()
        with self.lock:
            if self._ids is None:
                # The MANIFEST before the WAL: a file sealed meanwhile is in a later entry, read under LOCK.
                wal, end = (mark.wal, mark.offset) if mark is not None else (None, 0)
                self._build_ids(self._read_manifest(), wal, end)
                assert self._ids is not None
                if self._ids.seq_of is None and not self._ids.isdisjoint(ids):
                    self._keep_seqs = True  # a duplicate already: read with seqs (see EventIds), still before LOCK
                    self._build_ids(self._read_manifest(), wal, end)
                mark = self._wal.written_mark()  # and what others wrote meanwhile
            if mark is not None and mark.wal >= self._indexed[0]:
                self._index_upto(mark.wal, mark.offset)

    def _build_ids(self, m: manifest.ManifestLines, wal: str | None, end: int) -> None:
        """Index the events of ``m``'s segments and of the WAL frames up to
        offset ``end`` of file ``wal`` (none if None). Holding ``lock``."""
        self._built = False
        self._ids = EventIds(keep_seqs=self._keep_seqs)
        self._ids_entries = 0
        self._indexed = ("", 0)
        self._add_sealed_ids(m)
        if wal is not None:
            self._index_upto(wal, end)
        self._built = True

    def _search_unindexed(self, ids: list[str]) -> None:
        """Under LOCK: make ``_ids`` hold every one of ``ids`` that is in the log.

        Frames are msgspec's msgpack, in which a string is its shortest header
        and its UTF-8 bytes, so an event_id in the frames between ``_indexed``
        and the head appears there verbatim in that form: where none of ``ids``
        does, indexing those frames can wait for the next _prefetch_ids. A
        match (perhaps inside some other field) or a search costlier than
        decoding indexes them now.
        """
        name, fd = self._wal.fd_name, self._wal.fd
        assert name is not None and fd is not None  # set by sync_tail
        end = self._wal.scanned.get(name, 0)
        cur, offset = self._indexed
        if cur == name and offset >= end:
            return
        if cur == name and len(ids) * (end - offset) <= _SEARCH_BUDGET:
            data = os.pread(fd, end - offset, offset)
            if not any(msgspec.msgpack.encode(eid) in data for eid in ids):
                return
        self._index_upto(name, end)

    def existing(self, held: Held, m: manifest.ManifestLines, ids: list[str],
                 content_hash: Callable[[int], bytes]) -> dict[int, int]:
        """Batch index -> seq of events already recorded with identical
        content; raises ConflictingEvent when content differs. Holding
        LOCK and ``lock``."""
        index = self.load(held, m)
        self._search_unindexed(ids)
        if index.isdisjoint(ids):  # the common case, without building a set
            return {}
        if index.seq_of is None:  # this process's first duplicate: read the ids again, with their seqs
            self._keep_seqs = True
            self._ids = None
            index = self.load(held, m)
        assert index.seq_of is not None
        known = index.seq_of.keys() & ids
        hits = {i: index.seq_of[eid] for i, eid in enumerate(ids) if eid in known}
        stored = self._content_hashes(m, set(hits.values()))
        for i, seq in hits.items():
            if stored.get(seq) != content_hash(i):
                raise ConflictingEvent(ids[i], seq, index=i)
        return hits


def aliases(ids: list[str], content_hash: Callable[[int], bytes]) -> dict[int, int]:
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
