"""`chronicle <verb>`: the command line.

Exit codes: 0 success; 1 a check failed (verify found damage, a projection
failed); 2 bad usage or bad input (nothing was written); 3 the workspace or
storage is unusable (not initialised, disk full, corruption). Every error a
user sees is a :class:`chronicle.errors.ChronicleError`, which carries its code.

Building the parser imports no verb's work: Polars, Arrow, the store and
aiohttp are imported by the verb that needs them, so a verb pays only for
what it uses (a warm `ingest sessions` starts in a tenth of the time).
"""

from __future__ import annotations

import argparse
import os
import select
import sys
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

from chronicle import __version__
from chronicle.commands import experiments as experiments_cmd
from chronicle.commands import prices as prices_cmd
from chronicle.commands import report as report_cmd
from chronicle.commands import search as search_cmd
from chronicle.commands import show as show_cmd
from chronicle.commands import sql as sql_cmd
from chronicle.commands import sessions as sessions_cmd
from chronicle.commands import watch as watch_cmd
from chronicle.commands.output import out, print_json
from chronicle.errors import EXIT_FAILED, EXIT_OK, EXIT_STORE, EXIT_USAGE, ChronicleError, UsageError
from chronicle.store.fsutil import LockWaits
from chronicle.workspace import Workspace


def parse_as_of(text: str) -> int | datetime:
    """SEQ (an integer) or an ISO-8601 time (UTC if no zone is given)."""
    if text.isdigit():
        return int(text)
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(f"--as-of: {text!r} is neither a seq nor an ISO-8601 time") from None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def _snapshot(ws: Workspace, as_of: str | None):
    snap = ws.open_log().snapshot()
    if as_of is None:
        return snap
    point = parse_as_of(as_of)
    return snap.as_of(point if isinstance(point, int) else snap.seq_at(point))


# ------------------------------------------------------------------- verbs

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


def cmd_log(ws: Workspace, args: argparse.Namespace) -> int:
    from chronicle.jsonl import dump

    snap = _snapshot(ws, args.as_of)
    since = parse_as_of(args.since) if args.since else None
    until = parse_as_of(args.until) if args.until else None
    for name, value in (("--since", since), ("--until", until)):
        if isinstance(value, int):
            raise UsageError(f"{name} takes a time; use --from-seq/--to-seq for seqs")
    events = snap.events(types=args.type, stream=args.stream, seq_from=args.from_seq,
                         seq_to=args.to_seq, since=since, until=until)
    for n, ev in enumerate(events):
        if args.limit is not None and n >= args.limit:
            break
        if args.json:
            sys.stdout.buffer.write(dump(ev) + b"\n")
        else:
            when = ev.recorded_at.isoformat(timespec="seconds") if ev.recorded_at else "-"
            out(f"{ev.seq:>8}  {when}  {type(ev).type_name():<20} {ev.stream:<32} {ev.event_id}")
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


def cmd_rebuild(ws: Workspace, args: argparse.Namespace) -> int:
    from chronicle.projection import Engine

    snap = _snapshot(ws, args.as_of)
    engine = Engine.of(ws)
    out_dir = ws.tables_dir / "as-of" / f"seq-{snap.head}" if args.as_of else None
    outcomes = engine.run(snap, args.names, full=args.full or bool(args.as_of), out_dir=out_dir)
    for o in outcomes:
        if args.json:
            print_json({"projection": o.name, "action": o.action, "seq": o.seq, "rows": o.rows})
        else:
            tables = ", ".join(f"{t} ({n:,} rows)" for t, n in o.rows.items())
            out(f"{o.name:<20} {o.action:<8} at seq {o.seq}: {tables}")
    if out_dir is not None and not args.json:
        out(f"tables as of seq {snap.head} written to {out_dir}")
    return EXIT_OK


def cmd_replay(ws: Workspace, args: argparse.Namespace) -> int:
    from chronicle.projection import Engine

    snap = _snapshot(ws, args.as_of)
    out_dir = Path(args.out).resolve() if args.out else ws.tables_dir / "as-of" / f"seq-{snap.head}"
    outcomes = Engine.of(ws).run(snap, args.names, full=True, out_dir=out_dir)
    for o in outcomes:
        if args.json:
            print_json({"projection": o.name, "seq": o.seq, "rows": o.rows, "out": str(out_dir)})
        else:
            out(f"{o.name:<20} as of seq {o.seq}: " + ", ".join(f"{t} ({n:,} rows)" for t, n in o.rows.items()))
    if not args.json:
        out(f"written to {out_dir}")
    return EXIT_OK


def cmd_history(ws: Workspace, args: argparse.Namespace) -> int:
    from chronicle import history
    from chronicle.jsonl import dump

    snap = ws.open_log().snapshot()
    from chronicle import id_lookup

    if args.kind == "session":
        found = history.of_session(snap, id_lookup.session_id(snap, args.id))
    else:
        found = history.of_doc(snap, id_lookup.doc_id(snap, args.id))
    if not found.events:
        raise UsageError(f"no events for {args.kind} {args.id!r}")
    if args.json:
        for line in found.lineage:
            print_json({"lineage": line})
        for ev in found.events:
            sys.stdout.write(dump(ev).decode() + "\n")
        return EXIT_OK
    for line in found.lineage:
        out(f"lineage  {line}")
    for ev in found.events:
        out(f"{ev.seq:>10}  {ev.recorded_at.isoformat(timespec='seconds') if ev.recorded_at else '-':<25}  "
             f"{ev.type_name():<16}  {history.describe(ev)}")
    return EXIT_OK


def cmd_tables(ws: Workspace, args: argparse.Namespace) -> int:
    import polars as pl

    from chronicle.committed import table_files
    from chronicle.projection import Engine

    engine = Engine.of(ws)
    checkpoints = engine.checkpoints()
    head = ws.open_log().snapshot().head
    rows = []
    for p in engine.projections.values():
        cp = checkpoints.get(p.name)
        state = engine.state(p, cp, head)
        for t in p.outputs:
            files = table_files(ws.tables_dir, cp or {}, t)
            size = sum(f.stat().st_size for f in files) if all(f.exists() for f in files) else None
            rows.append({"table": t, "projection": p.name, "rows": (cp or {}).get("rows", {}).get(t) if size else None,
                         "bytes": size, "parts": len(files) if size else None, "seq": (cp or {}).get("seq"),
                         "state": state})
    rows.sort(key=lambda r: r["table"])
    if args.json:
        for r in rows:
            print_json(r)
    else:
        with pl.Config(tbl_rows=-1, tbl_hide_dataframe_shape=True, tbl_hide_column_data_types=True):
            out(str(pl.DataFrame(rows)))
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
    ok = report.ok and grown is not False
    if args.json:
        print_json({"ok": ok, "events": report.events, "segments": report.segments, "head_seq": report.head_seq,
               "head_hash": report.head_hash, "only_grown": grown,
               "problems": [{"path": p.path, "start": p.start, "end": p.end, "reason": p.reason, "fatal": p.fatal}
                            for p in report.problems]})
    else:
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
            out(f"ok: {report.events:,} events in {report.segments} segments + {report.wal_records} WAL records; "
                 f"head {report.head_seq}:{report.head_hash}")
    return EXIT_OK if ok else EXIT_FAILED


def cmd_checkpoint(ws: Workspace, args: argparse.Namespace) -> int:
    from chronicle.store import integrity

    cp = integrity.checkpoint(ws.open_log())
    if args.json:
        print_json({"seq": cp.seq, "head_hash": cp.head_hash, "at": cp.at.isoformat()})
    else:
        out(f"{cp}  {cp.at.isoformat(timespec='seconds')}")
    return EXIT_OK


def cmd_search(ws: Workspace, args: argparse.Namespace) -> int:
    try:
        return search_cmd.run(ws, args)
    except search_cmd.SearchError as exc:
        raise UsageError(str(exc)) from None


def cmd_demo(ws: Workspace, args: argparse.Namespace) -> int:
    from chronicle.demo import run_demo

    return run_demo(ws, out=out)


# ------------------------------------------------------------------- parser

EPILOG = """\
examples:
  chronicle init
  echo '{"type":"annotation","stream":"doc:d1","target":"doc:d1","key":"verdict","value":"good","author":"ana"}' | chronicle append
  chronicle log --type annotation --json
  chronicle seal && chronicle rebuild && chronicle show events_by_type
  chronicle rebuild --as-of 100          # tables as they were at seq 100, in data/tables/as-of/seq-100
  chronicle verify --against 120:ab12... # prove the log only grew since a checkpoint

exit codes: 0 ok, 1 a check failed, 2 bad usage or input, 3 workspace or storage unusable
"""


def build_parser() -> argparse.ArgumentParser:
    from chronicle.entry import Parser

    parser = Parser(
        prog="chronicle", description="An event-sourced, append-only log of LLM research work.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--root", help="workspace directory (default: $CHRONICLE_ROOT or the current directory)")
    parser.add_argument("--wait", type=float, metavar="SECONDS",
                        help="give up (exit 3) when the log's lock stays held this long (default: wait, saying "
                             "after a second which process holds it)")
    parser.add_argument("--version", action="version", version=f"chronicle {__version__}")
    sub = parser.add_subparsers(dest="verb", metavar="VERB", required=True)

    def verb(name: str, func: Callable | None, help: str, example: str, json_flag: bool = True,
             parent: argparse._SubParsersAction = sub) -> argparse.ArgumentParser:
        p = parent.add_parser(name, help=help, description=help, epilog=f"example:\n  {example}",
                              formatter_class=argparse.RawDescriptionHelpFormatter)
        if func is not None:
            p.set_defaults(func=func)
        if json_flag:
            p.add_argument("--json", action="store_true", help="machine-readable JSON (Lines) output")
        return p

    verb("init", cmd_init, "create a workspace (data/log and friends)", "chronicle --root ~/research init", json_flag=False)
    p = verb("append", cmd_append, "append events given as JSON Lines (stdin or FILE); all or nothing",
             "chronicle append events.jsonl      # or: producer | chronicle append --stream")
    p.add_argument("file", nargs="?", help="JSON Lines file (default: stdin)")
    p.add_argument("--stream", action="store_true",
                   help="commit and acknowledge lines as they arrive (producer | chronicle append --stream); "
                        "a bad line stops the stream, every earlier line acknowledged")
    p = verb("log", cmd_log, "print events, filtered", "chronicle log --type llm.response --from-seq 100 --json")
    p.add_argument("--type", action="append", help="event type (repeatable)")
    p.add_argument("--stream")
    p.add_argument("--from-seq", type=int)
    p.add_argument("--to-seq", type=int)
    p.add_argument("--since", help="ISO time")
    p.add_argument("--until", help="ISO time")
    p.add_argument("--as-of", help="SEQ or ISO time: read the log as it was then")
    p.add_argument("--limit", type=int)
    verb("stats", cmd_stats, "summarise the log: head, segments, events by type", "chronicle stats --json")
    verb("seal", cmd_seal, "move WAL records into Parquet segments", "chronicle seal")
    p = verb("rebuild", cmd_rebuild, "bring projections (tables) up to date; --full rebuilds from scratch",
             "chronicle rebuild events_by_type --as-of 2026-11-01T00:00:00Z")
    p.add_argument("names", nargs="*", metavar="NAME", help="projection or table names (default: all)")
    p.add_argument("--as-of", help="SEQ or ISO time; writes to data/tables/as-of/seq-N")
    p.add_argument("--full", action="store_true", help="ignore checkpoints and rebuild from the whole log")
    verb("tables", cmd_tables, "list tables, their projection, rows and checkpoint", "chronicle tables")
    show_cmd.add_verb(verb)
    p = verb("verify", cmd_verify, "recompute every hash; exit 1 naming the first bad file and byte range",
             "chronicle verify --against 1200:5f0c...")
    p.add_argument("--against", metavar="SEQ:HASH", help="also prove the log only grew since this checkpoint")
    p.add_argument("--deep", action="store_true",
                   help="also rebuild every event's canonical encoding from its columns and check its hash")
    p = verb("replay", cmd_replay, "rebuild tables as they were at a seq or time, into a separate folder",
             "chronicle replay --as-of 2026-10-01T00:00:00Z --out /tmp/october usage")
    p.add_argument("names", nargs="*", metavar="NAME", help="projection or table names (default: all)")
    p.add_argument("--as-of", required=True, help="SEQ or ISO time")
    p.add_argument("--out", metavar="DIR", help="where to write (default: data/tables/as-of/seq-N)")
    p = verb("history", cmd_history, "every event of a session or document, in order, with its lineage",
             "chronicle history session 5e55a000-0000-4000-8000-000000000001")
    p.add_argument("kind", choices=["session", "doc"])
    p.add_argument("id", metavar="ID", help="the id, a unique prefix of it, or (doc) DayDreaming's task id")
    verb("checkpoint", cmd_checkpoint, "print head seq, head hash and time (to anchor outside)", "chronicle checkpoint")
    ingest = verb("ingest", None, "record sources as events (see: chronicle ingest sessions --help)",
                  "chronicle ingest sessions ~/.claude/projects", json_flag=False)
    isub = ingest.add_subparsers(dest="source", metavar="SOURCE", required=True)
    p = verb("sessions", sessions_cmd.ingest_sessions,
             "Claude Code and Codex CLI transcripts: every line becomes a session.line (codex.line) event; "
             "a second run adds only new bytes; a rewritten file becomes a new generation",
             "chronicle ingest sessions ~/.claude/projects/-home-me-repo ~/.codex/sessions --json", parent=isub)
    p.add_argument("paths", nargs="*", metavar="PATH",
                   help="folders or files of either agent (default: ~/.claude/projects, "
                        "~/.config/claude/projects, $CLAUDE_CONFIG_DIR, $CODEX_HOME/sessions or ~/.codex/sessions)")
    p.add_argument("--quiet-seconds", type=float, default=10.0,
                   help="ingest an unterminated last line once the file has been unchanged this long (default 10)")
    p = verb("git", sessions_cmd.ingest_git_repo,
             "commits of a git repository, incrementally: sha, parents, author and committer with times, "
             "full message, files with status and line counts", "chronicle ingest git . --since 2026-01-01",
             parent=isub)
    p.add_argument("repo", metavar="REPO")
    p.add_argument("--since", metavar="DATE", help="only commits after DATE (anything git log --since takes)")
    experiments_cmd.add_verbs(verb, sub, isub)
    export = verb("export", None, "write ingested sources back out, byte for byte, or sessions as HTML or Markdown",
                  "chronicle export sessions ~/restored", json_flag=False)
    esub = export.add_subparsers(dest="what", metavar="WHAT", required=True)
    p = verb("session", sessions_cmd.export_session, "one session's transcript, byte for byte (stdout or -o FILE)",
             "chronicle export session 6f1c...-e2 -o session.jsonl", parent=esub)
    p.add_argument("session_id", metavar="ID", help="the session id or a unique prefix of it")
    p.add_argument("-o", "--output", metavar="FILE")
    p = verb("sessions", sessions_cmd.export_sessions, "every ingested transcript and sidecar, as a tree under DIR",
             "chronicle export sessions ~/restored --session 6f1c...-e2", parent=esub)
    p.add_argument("dir", metavar="DIR")
    p.add_argument("--session", metavar="ID", help="only this session (with its subagents and sidecars)")
    for kind, what in (("html", "web pages"), ("markdown", "Markdown files")):
        p = verb(kind, sessions_cmd.export_static, f"every session as {what}: an index and a page per session, "
                 "transcript text escaped (safe to share)", f"chronicle export {kind} ~/sessions-{kind}", parent=esub)
        p.add_argument("dir", metavar="DIR")
        p.add_argument("--session", metavar="ID", help="only this session (an id or a unique prefix)")
    p = verb("watch", watch_cmd.watch, "keep ingesting and projecting as files change (until SIGTERM/SIGINT)",
             "chronicle watch            # or: chronicle watch --once  (one catch-up pass, for cron)",
             json_flag=False)
    p.add_argument("--once", action="store_true", help="one catch-up pass, then exit")
    verb("status", watch_cmd.status, "the daemon's pid and uptime, the last event, lag per root, projection checkpoints",
         "chronicle status --json")
    p = verb("serve", cmd_serve, "a read-only web viewer: sessions, documents, scores, usage, events; live",
             "chronicle serve --port 8765        # then open http://127.0.0.1:8765/", json_flag=False)
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1: this machine only; the viewer has no login)")
    p.add_argument("--port", type=int, default=8765, help="port (default 8765; 0 picks a free one)")
    p.add_argument("--stale", action="store_true",
                   help="do not bring the tables up to date while serving (pages say how far they lag)")
    p = sub.add_parser("search", help=search_cmd.HELP, description=search_cmd.HELP,
                       epilog=search_cmd.EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    search_cmd.add_arguments(p)
    p.set_defaults(func=cmd_search)
    report_cmd.add_verb(sub)
    prices_cmd.add_verbs(verb, sub)
    sql_cmd.add_verb(sub)
    verb("demo", cmd_demo, "run the end-to-end demo on the embedded example data", "chronicle --root demo demo",
         json_flag=False)
    return parser


def cmd_serve(ws: Workspace, args: argparse.Namespace) -> int:
    from chronicle.web.app import serve  # aiohttp's server only when serving

    if not ws.log_dir.is_dir():
        raise UsageError(f"{ws.root} is not a workspace (no data/log): run `chronicle init` or pass --root")
    try:
        serve(ws, args.host, args.port, catch_up=not args.stale)
    except OSError as exc:
        print(f"chronicle serve: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


#: Verbs that work outside a workspace: the rest refuse a folder without data/log.
NO_WORKSPACE = {"init", "demo", "parse"}


def main(argv: list[str] | None = None) -> int:
    from chronicle.entry import _verb, hoist_globals

    argv = hoist_globals(list(sys.argv[1:] if argv is None else argv))
    parser = build_parser()
    typo = _unknown_verb(parser, _verb(argv))
    if typo:
        print(typo, file=sys.stderr)
        return EXIT_USAGE
    args = parser.parse_args(argv)
    LockWaits.notice = lambda text: print(f"chronicle {args.verb}: {text}", file=sys.stderr, flush=True)
    LockWaits.give_up_after = args.wait
    try:
        ws = Workspace.at(args.root)
        if args.verb not in NO_WORKSPACE and not (ws.log_dir / "MANIFEST").is_file():
            from chronicle.store.errors import NotAWorkspace

            raise NotAWorkspace(f"{ws.root} is not a chronicle workspace (no data/log): run `chronicle init` "
                                "there to make it one, or pass --root WORKSPACE")
        return args.func(ws, args)
    except ChronicleError as exc:
        print(f"chronicle {args.verb}: {exc.label}{exc}", file=sys.stderr)
        return exc.exit_code
    except BrokenPipeError:
        return EXIT_OK
    except OSError as exc:  # a path given on the command line cannot be read or written
        print(f"chronicle {args.verb}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as exc:  # never a traceback: one line, and how to get the details
        if os.environ.get("CHRONICLE_DEBUG"):
            raise
        print(f"chronicle {args.verb}: unexpected {type(exc).__name__}: {_one_line(exc)} "
              "(the workspace may be damaged: run `chronicle verify`; CHRONICLE_DEBUG=1 shows the traceback)",
              file=sys.stderr)
        return EXIT_STORE


def _unknown_verb(parser: argparse.ArgumentParser, verb: str | None) -> str | None:
    """A one-line error naming the nearest verb, when ``verb`` is none of them."""
    import difflib

    verbs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    if verb is None or verb in verbs:
        return None
    near = difflib.get_close_matches(verb, list(verbs), n=1)
    hint = f"did you mean `chronicle {near[0]}`? " if near else ""
    return f"chronicle: unknown verb {verb!r}: {hint}(`chronicle --help` lists them)"


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= 300 else text[:297] + "..."


if __name__ == "__main__":
    sys.exit(main())
