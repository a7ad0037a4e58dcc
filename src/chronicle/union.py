"""Every producer's log read as one: this workspace's and each mirror pulled (``chronicle pull``).

The order is the producers sorted by id (this workspace's own among them, ``""`` when it has
none yet), and each producer's events in its seq order. An event's union seq is its seq plus
the events of the producers before it: the union is numbered 1..N without gaps, the same on
every machine that holds the same logs, and a projection reads it as it reads one log
(``UnionSnapshot`` offers what the engine asks of a snapshot). Tables over the union are
built into ``data/tables/union/`` (``chronicle rebuild --union``, ``show --union``). Their
checkpoint names each producer's head (``sources``): when the last producer in the order
grew, its new events follow every union seq and are merged as usual; when another did, the
seqs after it moved, so the tables are built again.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import cached_property
from pathlib import Path

import polars as pl

from chronicle.errors import UsageError
from chronicle.store import Snapshot
from chronicle.store.manifest import Redaction
from chronicle.workspace import Workspace

UNION_DIR = "union"


class UnionSnapshot:
    def __init__(self, parts: Sequence[tuple[str, Snapshot]]):
        #: (producer id, its snapshot), in the union's order.
        self.parts = sorted(parts, key=lambda p: p[0])
        ids = [pid for pid, _ in self.parts]
        if len(set(ids)) != len(ids):
            raise UsageError(f"producer {next(i for i in ids if ids.count(i) > 1)!r} is pulled from two remotes: "
                             "its log would count twice")
        self.offsets: list[int] = []
        total = 0
        for _, snap in self.parts:
            self.offsets.append(total)
            total += snap.head
        self.head = self.full_head = total
        #: Each producer and its head: what the union's seqs stand on (see the module's docstring).
        self.sources = [[pid, snap.head] for pid, snap in self.parts]

    @property
    def redactions(self) -> list[Redaction]:
        return [r for _, snap in self.parts for r in snap.redactions]

    @cached_property
    def redacted(self) -> dict[int, list[Redaction]]:
        return {seq + off: rs for (_, snap), off in zip(self.parts, self.offsets) for seq, rs in snap.redacted.items()}

    def as_of(self, seq: int) -> UnionSnapshot:
        raise UsageError("the union of producers has no --as-of (each producer's log has its own seqs)")

    def types(self) -> list[str]:
        return sorted({t for _, snap in self.parts for t in snap.types()})

    def has_events(self, types: Iterable[str], after: int) -> bool:
        wanted = list(types)
        return any(snap.has_events(wanted, max(0, after - off))
                   for (_, snap), off in zip(self.parts, self.offsets) if off + snap.head > after)

    def frame(self, type_name: str, columns: Iterable[str] | None = None) -> pl.LazyFrame:
        """Every producer's events of ``type_name``, in the union's order, with union seqs."""
        columns = None if columns is None else list(columns)
        shifted = []
        for (_, snap), off in zip(self.parts, self.offsets):
            f = snap.frame(type_name, columns)
            if columns is None or "seq" in columns:
                f = f.with_columns(pl.col("seq") + off)
            shifted.append(f)
        if not shifted:
            raise UsageError("no log to read")
        union = pl.concat(shifted, how="vertical_relaxed")
        return union.set_sorted("seq") if columns is None or "seq" in columns else union

    def envelope(self, types: Iterable[str] | None = None) -> pl.LazyFrame:
        wanted = None if types is None else list(types)
        parts = [snap.envelope(wanted).with_columns(pl.col("seq") + off)
                 for (_, snap), off in zip(self.parts, self.offsets)]
        return pl.concat(parts, how="vertical_relaxed").set_sorted("seq")

    def event_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for _, snap in self.parts:
            for t, n in snap.event_counts().items():
                counts[t] = counts.get(t, 0) + n
        return counts


def union_snapshot(ws: Workspace) -> UnionSnapshot:
    """This workspace's log and every mirror pulled into it, as one."""
    from chronicle.remote import PRODUCER_FILE, mirrors, producer
    from chronicle.store import EventLog

    own = producer(ws.data).id if (ws.data / PRODUCER_FILE).exists() else ""
    parts = [(own, ws.open_log().snapshot())]
    for _, pid, folder in mirrors(ws.data):
        with EventLog(folder) as log:
            parts.append((pid, log.snapshot()))
    return UnionSnapshot(parts)


def union_dir(ws: Workspace) -> Path:
    return ws.tables_dir / UNION_DIR
