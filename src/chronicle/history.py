"""`chronicle history`: every event of one entity, in order, with its lineage.

A label's are the annotations on its target (``history episode ID``, ``action ID``,
``link SESSION@SHA``). A session's events are those of its files (transcript, subagents, sidecars:
every event on their ``source:<path>`` streams). A document's are those that
name its ``doc_id``; its lineage follows ``parent_doc_id`` up (evaluation ->
essay -> draft) and ``supersedes_doc_id`` across attempts.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import msgspec
import polars as pl

from chronicle.events import CATALOG, Event
from chronicle.store import Snapshot

_DOC_TYPES = ("llm.prompt", "llm.response", "parse.result")


@dataclass
class History:
    events: list[Event] = field(default_factory=list)
    lineage: list[str] = field(default_factory=list)


def _events(snap: Snapshot, where: dict[str, pl.Expr]) -> list[Event]:
    rows: list[tuple[int, Event]] = []
    present = set(snap.types())
    for type_name, expr in where.items():
        if type_name not in present:
            continue
        cls = CATALOG[type_name]
        for row in snap.frame(type_name).filter(expr).collect().to_dicts():
            rows.append((row["seq"], msgspec.convert(row, cls)))
    return [ev for _, ev in sorted(rows, key=lambda r: r[0])]


def of_session(snap: Snapshot, session_id: str) -> History:
    from chronicle.ingest.sources import LINE_EVENTS, session_lines

    lines = session_lines(snap, ["path", "session_id", "agent_id"])
    if lines is None:
        return History()
    # every line of the files that carry its id (a Codex file names its session on its first line only)
    files = lines.filter(pl.col("session_id") == session_id).select("path").unique()
    per_file = lines.join(files, on="path", how="semi").group_by("path").agg(pl.len().alias("n"), pl.col("agent_id").drop_nulls().first()).sort("path").collect()
    paths = set(per_file["path"].to_list())
    seen = snap.frame("source.seen", ["path"]).collect()["path"].to_list() if "source.seen" in snap.types() else []
    paths |= {p for p in seen if f"/{session_id}/" in p or p.rsplit("/", 1)[-1].startswith(session_id + ".")}
    streams = [f"source:{p}" for p in sorted(paths)]
    where = {t: pl.col("stream").is_in(streams) for t in CATALOG if t.startswith(("source.", "session.")) or t in LINE_EVENTS}
    found = History(events=_events(snap, where))
    found.lineage.append(f"session {session_id}: {sum(per_file['n'])} lines in {per_file.height} files")
    for path, n, agent in per_file.iter_rows():
        found.lineage.append(f"  {'subagent ' + agent if agent else 'transcript'}: {path} ({n} lines)")
    return found


def of_doc(snap: Snapshot, doc_id: str) -> History:
    """Reads only the rows it needs (filtered scans), so it stays quick on a log of millions of documents."""
    present = set(snap.types())
    found = History(events=_events(snap, {t: pl.col("doc_id") == doc_id for t in _DOC_TYPES}))
    if "llm.prompt" not in present:
        return found
    cols = ["doc_id", "logical_key_id", "parent_doc_id", "stage", "template_id", "model_id"]

    def prompt(d: str) -> dict | None:
        rows = snap.frame("llm.prompt", cols).filter(pl.col("doc_id") == d).head(1).collect()
        return rows.row(0, named=True) if rows.height else None

    by_doc: dict[str, dict] = {}
    chain, cur = [], doc_id
    while cur is not None and cur not in chain:
        chain.append(cur)
        row = prompt(cur)
        if row is None:
            break
        by_doc[cur] = row
        cur = row["parent_doc_id"]
    if chain and chain[0] in by_doc:
        found.lineage.append(" <- ".join(
            f"{by_doc[d]['stage']} {d} ({by_doc[d]['template_id']}, {by_doc[d]['model_id']})" if d in by_doc else d
            for d in chain))
    if "llm.response" in present:
        # the attempts: the documents of the same logical key, and whatever the supersedes links reach
        known = {doc_id}
        if doc_id in by_doc:
            known |= set(snap.frame("llm.prompt", ["doc_id", "logical_key_id"])
                         .filter(pl.col("logical_key_id") == by_doc[doc_id]["logical_key_id"]).collect()["doc_id"])
        for _ in range(16):
            responses = (snap.frame("llm.response", ["doc_id", "status", "supersedes_doc_id"])
                         .filter(pl.col("doc_id").is_in(list(known)) | pl.col("supersedes_doc_id").is_in(list(known)))
                         .collect())
            reached = known | set(responses["doc_id"]) | set(responses["supersedes_doc_id"].drop_nulls())
            if reached == known:
                break
            known = reached
        supersedes = {r["doc_id"]: r["supersedes_doc_id"] for r in responses.to_dicts() if r["supersedes_doc_id"]}
        later = {v: k for k, v in supersedes.items()}
        first = doc_id
        while first in supersedes:
            first = supersedes[first]
        attempts, cur = [], first
        while cur is not None and cur not in attempts:
            attempts.append(cur)
            cur = later.get(cur)
        if len(attempts) > 1:
            status = dict(zip(responses["doc_id"], responses["status"]))
            found.lineage.append("attempts: " + " -> ".join(f"{d} ({status.get(d, '?')})" for d in attempts))
    return found


def of_label_target(snap: Snapshot, kind: str, target_id: str) -> History:
    """Every label given to an episode, an action (tool call) or a link (``SESSION@SHA``):
    who said what, when; the latest stands."""
    found = History(events=_events(snap, {"annotation": pl.col("target") == f"{kind}:{target_id}"}))
    if found.events:
        last = found.events[-1]
        found.lineage.append(f"{kind} {target_id}: {len(found.events)} label(s); standing: {last.key}={last.value} "
                             f"by {last.author}")
    return found


def describe(ev: Event) -> str:
    """One line about an event, for people."""
    d = msgspec.structs.asdict(ev)
    t = ev.type_name()
    if t == "session.line":
        what = d["error"] or " ".join(x for x in (d["record_type"], d["subtype"], d["uuid"]) if x)
        return f"{d['path'].rsplit('/', 1)[-1]}:{d['line_no']}  {what}"
    if t.startswith("source."):
        keys = [k for k in ("kind", "generation", "start", "end", "reason", "error") if d.get(k) is not None]
        return f"{d['path'].rsplit('/', 1)[-1]}  " + " ".join(f"{k}={d[k]}" for k in keys)
    skip = {"stream", "event_id", "seq", "recorded_at", "raw", "prompt", "text", "parsed"}
    parts = [f"{k}={v}" for k, v in d.items() if k not in skip and v not in (None, "", "{}")]
    return " ".join(parts)[:160]
