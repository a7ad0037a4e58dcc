"""The tables the training verbs read, brought up to date and read at one checkpoint."""

from __future__ import annotations

from typing import TYPE_CHECKING

import polars as pl

from chronicle.errors import CheckFailed

if TYPE_CHECKING:
    from chronicle.store import Snapshot
    from chronicle.workspace import Workspace

#: Every table a training verb reads.
NAMES = ["episodes", "sessions", "tool_calls", "commits", "session_commits", "projects", "session_projects", "labels"]


def current(ws: Workspace, names: list[str] = NAMES, snap: Snapshot | None = None,
            attempts: int = 3) -> tuple[dict[str, pl.DataFrame], int]:
    """``names`` brought up to date with the log (or ``snap``), all read at one seq, and that seq.
    Another process (the daemon) may move them on between the two steps: then again."""
    from chronicle.projection import Engine, read_tables

    engine = Engine.of(ws)
    for _ in range(attempts):
        at = snap or ws.open_log().snapshot()
        engine.run(at, names)
        tables, view = read_tables(ws.tables_dir, names)
        seqs = {view.seq(t) for t in names}
        if len(seqs) == 1 and (snap is None or seqs == {snap.head}):
            return tables, seqs.pop()
    raise CheckFailed(f"the tables {', '.join(names)} kept moving while being read (is a rebuild running?); "
                      "try again")


def as_of(ws: Workspace, seq: int, out_dir, names: list[str] = NAMES) -> dict[str, pl.DataFrame]:
    """``names`` built from the log as it stood at ``seq`` into ``out_dir`` (an audit's replay)."""
    from chronicle.projection import Engine, read_tables

    snap = ws.open_log().snapshot().as_of(seq)
    Engine.of(ws).run(snap, names, full=True, out_dir=out_dir)
    return read_tables(out_dir, names)[0]


def head_hash_at(ws: Workspace, seq: int) -> str:
    """The log's hash chain at ``seq``: from the MANIFEST and the WAL when ``seq`` is the head
    (the common case), else by recomputing the chain up to it (a full check of the log)."""
    from chronicle.store import integrity

    log = ws.open_log()
    cp = integrity.checkpoint(log)
    if cp.seq == seq:
        return cp.head_hash
    report = integrity.verify(log, at_seq=seq, deep=False)
    if report.hash_at is None:
        raise CheckFailed(f"the log's hash at seq {seq} cannot be computed: "
                          + ("; ".join(p.reason for p in report.problems) or "seq beyond the head"))
    return report.hash_at
