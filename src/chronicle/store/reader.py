"""Snapshots: a fixed view of the log (MANIFEST entries + WAL tail).

Everything read through a snapshot is as of one seq: tables per event type,
already upcast to the current version, or event objects in seq order.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from functools import cached_property
from typing import TYPE_CHECKING

import msgspec
import polars as pl

from chronicle.events import CATALOG, Event, event_class, upcast
from chronicle.store import codec
from chronicle.store.manifest import ManifestEntry, Redaction

if TYPE_CHECKING:
    from chronicle.store.batch import WalRecord
    from chronicle.store.segment_checks import SegmentChecks

ENVELOPE = list(codec.ENVELOPE_COLUMNS)


class Snapshot:
    def __init__(self, segments: SegmentChecks, entries: list[ManifestEntry], wal: list[WalRecord],
                 upto: int | None = None, redactions: Sequence[Redaction] = ()):
        #: Where its segment files are read from, each checked against the MANIFEST first.
        self.segments = segments
        self.entries = entries
        self.wal = wal
        #: The redactions committed (``store.redaction``), in order.
        self.redactions = list(redactions)
        full = wal[-1].seq if wal else (entries[-1].last_seq if entries else 0)
        #: The whole log's head; ``head`` is less for a snapshot cut by as_of.
        self.full_head = full
        self.head = full if upto is None else min(upto, full)

    def as_of(self, seq: int) -> Snapshot:
        """The same snapshot cut at ``seq`` (later events are invisible)."""
        return Snapshot(self.segments, self.entries, self.wal, upto=seq, redactions=self.redactions)

    @cached_property
    def redacted(self) -> dict[int, list[Redaction]]:
        """seq -> the redactions that replaced values of its event (a redacted event's flag)."""
        out: dict[int, list[Redaction]] = {}
        for r in self.redactions:
            for row in r.rows:
                out.setdefault(row.seq, []).append(r)
        return out

    def seq_at(self, when: datetime) -> int:
        """The last seq recorded at or before ``when`` (0 if none).

        Times are the writers' clocks as they read, not forced to rise with the
        seq, so this is the greatest seq whose time is not after ``when``."""
        us = codec.micros(when)
        best = 0
        straddling = []
        for e in self.entries:
            if e.max_recorded_at <= us:
                best = max(best, e.last_seq)
            elif e.min_recorded_at <= us:
                straddling.append(e)
        for e in straddling:
            if e.last_seq > best:
                env = self.envelope().filter(pl.col("seq").is_between(e.first_seq, e.last_seq)).collect()
                hit = env.filter(pl.col("recorded_at").dt.epoch("us") <= us)
                best = max(best, int(hit["seq"].max() or 0))
        for r in self.wal:
            if r.recorded_at_us <= us:
                best = max(best, r.seq)
        return min(best, self.head)

    # ------------------------------------------------------------- tables

    @cached_property
    def _wal_contents(self) -> dict[tuple[str, int], list[dict]]:
        groups: dict[tuple[str, int], list[dict]] = {}
        for r in self.wal:
            if r.seq > self.head:
                break
            content = r.row()
            groups.setdefault((content["type"], content["v"]), []).append(content)
        return groups

    def types(self) -> list[str]:
        """Event types present in this snapshot."""
        seen = {f.type for e in self.entries if e.first_seq <= self.head for f in e.files}
        seen.update(t for t, _ in self._wal_contents)
        return sorted(seen)

    def has_events(self, types: Iterable[str], after: int) -> bool:
        """Whether an event of one of ``types`` has a seq in (``after``, head].
        A segment that straddles ``after`` counts as having one (it may)."""
        wanted = set(types)
        if after >= self.head:
            return False
        for e in self.entries:
            if e.last_seq > after and e.first_seq <= self.head and any(f.type in wanted for f in e.files):
                return True
        return any(t in wanted and rows[-1]["seq"] > after for (t, _), rows in self._wal_contents.items())

    def frame(self, type_name: str, columns: Iterable[str] | None = None) -> pl.LazyFrame:
        """All events of ``type_name`` up to the snapshot's head, current version, by seq."""
        cls = event_class(type_name)
        schema = codec.arrow_schema(cls)
        by_version: dict[int, list[str]] = {}
        for e in self.entries:
            if e.first_seq > self.head:
                break
            for f in e.files:
                if f.type == type_name:
                    by_version.setdefault(f.v, []).append(str(self.segments.path(f, e.n)))
        parts: list[pl.LazyFrame] = []
        for v, paths in sorted(by_version.items()):
            parts.append(upcast(type_name, v, pl.scan_parquet(paths)))
        wal_versions = 0
        for (t, v), rows in sorted(self._wal_contents.items()):
            if t == type_name:
                table = codec.rows_to_table(event_class(t, v), rows)
                parts.append(upcast(type_name, v, pl.from_arrow(table).lazy()))
                wal_versions += 1
        names = schema.names
        if not parts:
            empty = pl.from_arrow(schema.empty_table())
            assert isinstance(empty, pl.DataFrame)
            frame = empty.lazy()
        else:
            frame = pl.concat([p.select(names) for p in parts], how="vertical_relaxed")
            # Segment files hold rows in seq order, MANIFEST entries follow each other and
            # the WAL follows them all, so one version's parts are in order as they come.
            # Sorting them anyway would move every column of every row (the bulk of a read).
            if len(by_version) > 1 or wal_versions > 1:
                frame = frame.sort("seq")
            else:
                frame = frame.set_sorted("seq")
        frame = frame.filter(pl.col("seq") <= self.head)
        if columns is not None:
            frame = frame.select(list(columns))
        return frame

    def envelope(self, types: Iterable[str] | None = None) -> pl.LazyFrame:
        """Envelope columns of every event (or of ``types``), by seq."""
        wanted = self.types() if types is None else [t for t in types if t in self.types()]
        if not wanted:
            empty = pl.from_arrow(codec.ENVELOPE_SCHEMA.empty_table())
            assert isinstance(empty, pl.DataFrame)
            return empty.lazy()
        return pl.concat([self.frame(t, ENVELOPE) for t in wanted]).sort("seq")

    # ------------------------------------------------------------- events

    def events(
        self,
        types: Iterable[str] | None = None,
        stream: str | None = None,
        seq_from: int | None = None,
        seq_to: int | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> Iterator[Event]:
        """Event objects in seq order, filtered. Reads type by type, merged by seq."""
        wanted = self.types() if types is None else [t for t in types if t in set(self.types())]
        filters = []
        if stream is not None:
            filters.append(pl.col("stream") == stream)
        if seq_from is not None:
            filters.append(pl.col("seq") >= seq_from)
        if seq_to is not None:
            filters.append(pl.col("seq") <= seq_to)
        if since is not None:
            filters.append(pl.col("recorded_at") >= since)
        if until is not None:
            filters.append(pl.col("recorded_at") <= until)
        rows: list[tuple[int, Event]] = []
        for t in wanted:
            frame = self.frame(t)
            if filters:
                frame = frame.filter(*filters)
            cls = CATALOG[t]
            for row in frame.collect().to_dicts():
                rows.append((row["seq"], msgspec.convert(row, cls)))
        rows.sort(key=lambda x: x[0])
        for _, ev in rows:
            yield ev

    def event_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for e in self.entries:
            if e.last_seq <= self.head:
                for f in e.files:
                    counts[f.type] = counts.get(f.type, 0) + f.rows
            elif e.first_seq <= self.head:
                env = self.envelope().filter(pl.col("seq").is_between(e.first_seq, self.head))
                for t, n in env.group_by("type").len().collect().iter_rows():
                    counts[t] = counts.get(t, 0) + n
        for (t, _), rows in self._wal_contents.items():
            counts[t] = counts.get(t, 0) + len(rows)
        return counts


