"""``chronicle ingest definitions``: record ``data/1_raw`` as ``definitions.snapshot`` events.

One event per file whose content differs from the last recorded version of
that path (a removed file is recorded with kind ``removed``), so a re-run over
unchanged files appends nothing. The event id names the previous and the new
content hash: deterministic, and a file that goes A -> B -> A records three
events, not two.

:func:`recorded` rebuilds the ``{path: bytes}`` mapping from the log, as of any
seq, so a prompt can be re-rendered from exactly the definitions it was
rendered from.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from chronicle.events import DefinitionsSnapshot
from chronicle.experiment import definitions as defs
from chronicle.store import EventLog, Snapshot

REMOVED = "removed"


@dataclass
class DefinitionsReport:
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: int = 0
    definitions: defs.Definitions | None = None


def recorded_versions(snap: Snapshot) -> pl.DataFrame:
    """The latest recorded (path, sha256, kind) per path, removed files included."""
    if "definitions.snapshot" not in snap.types():
        return pl.DataFrame(schema={"path": pl.String, "sha256": pl.String, "kind": pl.String, "seq": pl.Int64})
    return (snap.frame("definitions.snapshot", ["seq", "path", "sha256", "kind"])
            .sort("seq").group_by("path").last().sort("path").collect())


def recorded(snap: Snapshot) -> dict[str, bytes]:
    """The definition files as recorded up to the snapshot's head."""
    if "definitions.snapshot" not in snap.types():
        return {}
    latest = (snap.frame("definitions.snapshot", ["seq", "path", "kind", "content"])
              .sort("seq").group_by("path").last().filter(pl.col("kind") != REMOVED).sort("path").collect())
    return dict(zip(latest["path"].to_list(), latest["content"].to_list()))


def ingest_definitions(log: EventLog, folder: Path) -> DefinitionsReport:
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such definitions folder (expected the data/1_raw layout)")
    files = defs.read_folder(folder)
    report = DefinitionsReport(definitions=defs.parse(files))
    previous = {r["path"]: r for r in recorded_versions(log.snapshot()).to_dicts()}
    events = []
    for rel, content in files.items():
        sha = hashlib.sha256(content).hexdigest()
        before = previous.get(rel)
        if before is not None and before["kind"] != REMOVED and before["sha256"] == sha:
            report.unchanged += 1
            continue
        (report.added if before is None or before["kind"] == REMOVED else report.changed).append(rel)
        events.append(_event(rel, defs.kind_of(rel), sha, content, before))
    for rel, before in previous.items():
        if rel not in files and before["kind"] != REMOVED:
            report.removed.append(rel)
            events.append(_event(rel, REMOVED, "", b"", before))
    if events:
        log.append(events)
    return report


def _event(rel: str, kind: str, sha: str, content: bytes, before: dict | None) -> DefinitionsSnapshot:
    prev = "" if before is None else (before["sha256"] or REMOVED)
    return DefinitionsSnapshot(stream=f"definitions:{rel}", event_id=f"definitions:{rel}:{prev}->{sha or REMOVED}",
                               path=rel, kind=kind, sha256=sha, content=content)
