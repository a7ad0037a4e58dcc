"""The log's own verbs: `init`, `append`, `log`, `stats`, `seal`, `verify`, `checkpoint`, `history`."""

from __future__ import annotations

import argparse
import os
import select
import sys
from datetime import datetime, timezone
from pathlib import Path

from chronicle.commands.output import out, print_json
from chronicle.commands.verbs import Verbs
from chronicle.errors import EXIT_FAILED, EXIT_OK, UsageError
from chronicle.workspace import Workspace


def register(verbs: Verbs) -> None:
    verbs.add("init", cmd_init, "create a workspace (data/log and friends)", "chronicle --root ~/research init",
              json=False, workspace=False)
    p = verbs.add("append", cmd_append, "append events given as JSON Lines (stdin or FILE); all or nothing",
                  "chronicle append events.jsonl      # or: producer | chronicle append --stream")
    p.add_argument("file", nargs="?", help="JSON Lines file (default: stdin)")
    p.add_argument("--stream", action="store_true",
                   help="commit and acknowledge lines as they arrive (producer | chronicle append --stream); "
                        "a bad line stops the stream, every earlier line acknowledged")
    p = verbs.add("log", cmd_log, "print events, filtered", "chronicle log --type llm.response --from-seq 100 --json")
    p.add_argument("--type", action="append", help="event type (repeatable)")
    p.add_argument("--stream")
    p.add_argument("--from-seq", type=int)
    p.add_argument("--to-seq", type=int)
    p.add_argument("--since", help="ISO time")
    p.add_argument("--until", help="ISO time")
    p.add_argument("--as-of", help="SEQ or ISO time: read the log as it was then")
    p.add_argument("--limit", type=int)
    verbs.add("stats", cmd_stats, "summarise the log: head, segments, events by type", "chronicle stats --json")
    verbs.add("seal", cmd_seal, "move WAL records into Parquet segments", "chronicle seal")
    p = verbs.add("verify", cmd_verify, "recompute every hash; exit 1 naming the first bad file and byte range",
                  "chronicle verify --against 1200:5f0c...")
    p.add_argument("--against", metavar="SEQ:HASH", help="also prove the log only grew since this checkpoint")
    p.add_argument("--deep", action="store_true",
                   help="also rebuild every event's canonical encoding from its columns and check its hash")
    p = verbs.add("history", cmd_history, "every event of a session or document, in order, with its lineage; "
                  "the labels of an episode, action or link", "chronicle history session 5e55a000-0000-4000-8000-000000000001")
    p.add_argument("kind", choices=["session", "doc", "episode", "action", "link"])
    p.add_argument("id", metavar="ID", help="the id, a unique prefix of it, or (doc) DayDreaming's task id; a link is SESSION@SHA")
    verbs.add("checkpoint", cmd_checkpoint, "print head seq, head hash and time (to anchor outside)",
              "chronicle checkpoint")


def parse_as_of(text: str) -> int | datetime:
    """SEQ (an integer) or an ISO-8601 time (UTC if no zone is given)."""
    if text.isdigit():
        return int(text)
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(f"--as-of: {text!r} is neither a seq nor an ISO-8601 time") from None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def snapshot_as_of(ws: Workspace, as_of: str | None):
    snap = ws.open_log().snapshot()
    if as_of is None:
        return snap
    point = parse_as_of(as_of)
    return snap.as_of(point if isinstance(point, int) else snap.seq_at(point))


def cmd_init(ws: Workspace, args: argparse.Namespace) -> int:
    from chronicle.commands.output import command_name
    from chronicle.config import CONFIG_NAME, commented_template

    existed = ws.log_dir.joinpath("MANIFEST").exists()
    ws.init()
    out(f"{'workspace already initialised' if existed else 'initialised workspace'} at {ws.root}")
    config = ws.root / CONFIG_NAME
    if not config.exists():
        config.write_text(commented_template())
        out(f"wrote {config}: every setting, commented out")
    c = command_name() + ("" if Path.cwd().resolve() == ws.root else f" --root {ws.root}")
    out("next:")
    for command, why in ((f"{c} report daily", "Claude Code tokens and cost per day (reads ~/.claude/projects)"),
                         (f"{c} show sessions", "your sessions, titled"),
                         (f"{c} watch", "keep recording as you work"),
                         (f"{c} serve", "browse them at http://127.0.0.1:8765/")):
        out(f"  {command:<{len(c) + 16}} # {why}")
    return EXIT_OK


def cmd_append(ws: Workspace, args: argparse.Namespace) -> int:
    from chronicle.jsonl import parse_lines

    source = sys.stdin.buffer if args.file in (None, "-") else open(args.file, "rb")
    if args.stream:
        with source, ws.open_log() as log:
            return _append_stream(log, source, args.json)
    with source:
        events = parse_lines(source)
    with ws.open_log() as log:
        acks = log.append(events)
    _print_acks(acks, args.json)
    return EXIT_OK


def _print_acks(acks, as_json: bool) -> None:
    for ack in acks:
        if as_json:
            print_json({"seq": ack.seq, "event_id": ack.event_id, "duplicate": ack.duplicate})
        else:
            out(f"{ack.seq}\t{ack.event_id}{'	(already recorded)' if ack.duplicate else ''}")
    sys.stdout.flush()


def _append_stream(log, source, as_json: bool) -> int:
    """Commit lines as they arrive: each group of lines that arrives together is one
    durable append, acknowledged (and flushed) before the next read. A bad line
    stops the stream (exit 2) after everything before it is acknowledged."""
    from chronicle.jsonl import parse_line
    from chronicle.store import InvalidEvent

    fd = source.fileno()
    pending, line_no = b"", 0
    while True:
        chunk = os.read(fd, 1 << 16)
        while chunk and select.select([fd], [], [], 0)[0]:  # what else has arrived already joins this commit
            more = os.read(fd, 1 << 16)
            if not more:
                break
            chunk += more
        data = pending + chunk
        lines = data.split(b"\n")
        pending = lines.pop() if chunk else b""
        if not chunk and data:
            lines = [data]
        events, error = [], None
        for line in lines:
            line_no += 1
            if not line.strip():
                continue
            try:
                events.append(parse_line(line, line_no))
            except InvalidEvent as exc:
                error = exc
                break
        if events:
            _print_acks(log.append(events), as_json)
        if error is not None:
            raise error
        if not chunk:
            return EXIT_OK


def flagged(line: bytes, redacted: bool) -> bytes:
    """An event's JSON object, with ``"redacted":true`` when a redaction replaced values in it."""
    return line[:-1] + b',"redacted":true}' if redacted else line


def cmd_log(ws: Workspace, args: argparse.Namespace) -> int:
    from chronicle.jsonl import dump

    snap = snapshot_as_of(ws, args.as_of)
    since = parse_as_of(args.since) if args.since else None
    until = parse_as_of(args.until) if args.until else None
    for name, value in (("--since", since), ("--until", until)):
        if isinstance(value, int):
            raise UsageError(f"{name} takes a time; use --from-seq/--to-seq for seqs")
    from chronicle.secrets.mask import Masker

    masker = Masker.of(ws)  # secrets in events printed are masked
    events = snap.events(types=args.type, stream=args.stream, seq_from=args.from_seq,
                         seq_to=args.to_seq, since=since, until=until)
    for n, ev in enumerate(events):
        if args.limit is not None and n >= args.limit:
            break
        if args.json:
            sys.stdout.buffer.write(flagged(dump(masker.event(ev)), ev.seq in snap.redacted) + b"\n")
        else:
            when = ev.recorded_at.isoformat(timespec="seconds") if ev.recorded_at else "-"
            out(f"{ev.seq:>8}  {when}  {type(ev).type_name():<20} {ev.stream:<32} {ev.event_id}"
                + ("  (redacted)" if ev.seq in snap.redacted else ""))
    sys.stdout.flush()
    return EXIT_OK


def _dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def cmd_stats(ws: Workspace, args: argparse.Namespace) -> int:
    import polars as pl

    log = ws.open_log()
    m, wal = log.read_wal()
    snap = log.snapshot()
    counts = snap.event_counts()
    info = {
        "root": str(ws.root),
        "head_seq": snap.head,
        "sealed_seq": m.entries[-1].last_seq if m.entries else 0,
        "segments": len(m.entries),
        "segment_files": sum(len(e.files) for e in m.entries),
        "wal_records": len(wal),
        "log_bytes": _dir_size(ws.log_dir),
        "events_by_type": dict(sorted(counts.items())),
    }
    if args.json:
        print_json(info)
        return EXIT_OK
    for key in ("root", "head_seq", "sealed_seq", "segments", "segment_files", "wal_records", "log_bytes"):
        out(f"{key:<14} {info[key]:,}" if isinstance(info[key], int) else f"{key:<14} {info[key]}")
    if counts:
        out()
        out(str(pl.DataFrame({"type": list(info["events_by_type"]), "events": list(info["events_by_type"].values())})))
    return EXIT_OK


def cmd_seal(ws: Workspace, args: argparse.Namespace) -> int:
    entries = ws.open_log().seal()
    if args.json:
        for e in entries:
            print_json({"n": e.n, "first_seq": e.first_seq, "last_seq": e.last_seq, "files": [f.name for f in e.files]})
    elif not entries:
        out("nothing to seal")
    for e in entries if not args.json else ():
        out(f"sealed seqs {e.first_seq}..{e.last_seq} into {len(e.files)} file(s) (MANIFEST entry {e.n})")
    return EXIT_OK


def cmd_verify(ws: Workspace, args: argparse.Namespace) -> int:
    from chronicle.store import integrity

    against = None
    if args.against:
        try:
            against = integrity.Checkpoint.parse(args.against)
        except ValueError as exc:
            raise UsageError(f"--against: {exc}") from None
    report = integrity.verify(ws.open_log(), at_seq=against.seq if against else None, deep=args.deep)
    grown = None
    if against is not None:
        grown = report.hash_at == against.head_hash
    mirrors = _verify_mirrors(ws, args.deep)
    ok = report.ok and grown is not False and all(r.ok for _, _, r in mirrors)
    if args.json:
        print_json({"ok": ok, "events": report.events, "segments": report.segments, "head_seq": report.head_seq,
               "head_hash": report.head_hash, "only_grown": grown, "redactions": report.redactions,
               "problems": _problems(report),
               "mirrors": [{"remote": name, "producer": pid, "ok": r.ok, "events": r.events, "head_seq": r.head_seq,
                            "head_hash": r.head_hash, "problems": _problems(r)} for name, pid, r in mirrors]})
    else:
        for name, pid, r in mirrors:  # other producers' logs pulled from a remote (chronicle pull)
            for p in r.problems:
                out(f"{name}/{pid}: {'ERROR' if p.fatal else 'warning'}: {p}")
            if r.ok:
                out(f"{name}/{pid}: ok: {r.events:,} events in {r.segments} segments; head {r.head_seq}:{r.head_hash}")
        for p in report.problems:
            out(f"{'ERROR' if p.fatal else 'warning'}: {p}")
        if against is not None:
            if grown:
                out(f"log has only grown since checkpoint {against.seq}")
            elif report.hash_at is None:
                out(f"ERROR: checkpoint seq {against.seq} is beyond the log head {report.head_seq}")
            else:
                out(f"ERROR: the log up to seq {against.seq} differs from the checkpoint")
        if report.ok:
            redacted = f"; {report.redactions} redaction(s), content replaced, hashes kept" if report.redactions else ""
            out(f"ok: {report.events:,} events in {report.segments} segments + {report.wal_records} WAL records"
                f"{redacted}; head {report.head_seq}:{report.head_hash}")
    return EXIT_OK if ok else EXIT_FAILED


def _problems(report) -> list[dict]:
    return [{"path": p.path, "start": p.start, "end": p.end, "reason": p.reason, "fatal": p.fatal}
            for p in report.problems]


def _verify_mirrors(ws: Workspace, deep: bool) -> list:
    """(remote, producer, report) of every mirror pulled into data/remotes/."""
    from chronicle.remote import mirrors
    from chronicle.store import EventLog
    from chronicle.store import integrity

    found = []
    for name, pid, folder in mirrors(ws.data):
        with EventLog(folder) as log:
            found.append((name, pid, integrity.verify(log, deep=deep)))
    return found


def cmd_checkpoint(ws: Workspace, args: argparse.Namespace) -> int:
    from chronicle.store import integrity

    cp = integrity.checkpoint(ws.open_log())
    if args.json:
        print_json({"seq": cp.seq, "head_hash": cp.head_hash, "at": cp.at.isoformat()})
    else:
        out(f"{cp}  {cp.at.isoformat(timespec='seconds')}")
    return EXIT_OK


def cmd_history(ws: Workspace, args: argparse.Namespace) -> int:
    from chronicle import history
    from chronicle.jsonl import dump

    snap = ws.open_log().snapshot()
    from chronicle import id_lookup

    if args.kind == "session":
        found = history.of_session(snap, id_lookup.session_id(snap, args.id))
    elif args.kind in ("episode", "action", "link"):
        found = history.of_label_target(snap, args.kind, args.id)
    else:
        found = history.of_doc(snap, id_lookup.doc_id(snap, args.id))
    if not found.events:
        raise UsageError(f"no events for {args.kind} {args.id!r}")
    from chronicle.secrets.mask import Masker

    masker = Masker.of(ws)  # secrets in events printed are masked
    if args.json:
        for line in found.lineage:
            print_json({"lineage": line})
        for ev in found.events:
            sys.stdout.write(flagged(dump(masker.event(ev)), ev.seq in snap.redacted).decode() + "\n")
        return EXIT_OK
    for line in found.lineage:
        out(f"lineage  {line}")
    for ev in found.events:
        out(f"{ev.seq:>10}  {ev.recorded_at.isoformat(timespec='seconds') if ev.recorded_at else '-':<25}  "
             f"{ev.type_name():<16}  {masker.text(history.describe(ev))}"
             + ("  (redacted)" if ev.seq in snap.redacted else ""))
    return EXIT_OK
