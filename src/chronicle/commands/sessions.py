"""`chronicle ingest sessions|git` and `chronicle export session(s)`."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from typing import TYPE_CHECKING

# Light at import (the command line imports every verb's module); the store and Polars when a verb runs.
from chronicle.commands.output import print_json
from chronicle.commands.verbs import Verbs
from chronicle.errors import EXIT_OK, UsageError
from chronicle.progress import Progress
from chronicle.workspace import Workspace

if TYPE_CHECKING:
    from chronicle.export import Exported

INGEST_HELP = "record sources as events (see: chronicle ingest sessions --help)"
INGEST_EXAMPLE = "chronicle ingest sessions ~/.claude/projects"


def register(verbs: Verbs) -> None:
    verbs.group("ingest", INGEST_HELP, INGEST_EXAMPLE)
    p = verbs.add("sessions", ingest_sessions,
                  "Claude Code and Codex CLI transcripts: every line becomes a session.line (codex.line) event; "
                  "a second run adds only new bytes; a rewritten file becomes a new generation",
                  "chronicle ingest sessions ~/.claude/projects/-home-me-repo ~/.codex/sessions --json",
                  under="ingest", served=lambda a: all(os.path.isabs(p) for p in a.paths))
    p.add_argument("paths", nargs="*", metavar="PATH",
                   help="folders or files of either agent (default: ~/.claude/projects, ~/.config/claude/projects, "
                        "$CLAUDE_CONFIG_DIR, $CODEX_HOME/sessions or ~/.codex/sessions)")
    p.add_argument("--quiet-seconds", type=float, default=10.0,
                   help="ingest an unterminated last line once the file has been unchanged this long (default 10)")
    p = verbs.add("git", ingest_git_repo,
                  "commits of a git repository, incrementally: sha, parents, author and committer with times, "
                  "full message, files with status and line counts", "chronicle ingest git . --since 2026-01-01",
                  under="ingest")
    p.add_argument("repo", metavar="REPO")
    p.add_argument("--since", metavar="DATE", help="only commits after DATE (anything git log --since takes)")
    verbs.group("export", "write ingested sources back out, byte for byte, or sessions as HTML or Markdown",
                "chronicle export sessions ~/restored")
    p = verbs.add("session", export_session, "one session's transcript, byte for byte (stdout or -o FILE)",
                  "chronicle export session 6f1c...-e2 -o session.jsonl", under="export")
    p.add_argument("session_id", metavar="ID", help="the session id or a unique prefix of it")
    p.add_argument("-o", "--output", metavar="FILE")
    p.add_argument("--redact", action="store_true",
                   help="mask the secrets in it (byte for byte otherwise; a session with findings says so on stderr)")
    p = verbs.add("sessions", export_sessions, "every ingested transcript and sidecar, as a tree under DIR",
                  "chronicle export sessions ~/restored --session 6f1c...-e2", under="export")
    p.add_argument("dir", metavar="DIR")
    p.add_argument("--session", metavar="ID", help="only this session (with its subagents and sidecars)")
    for kind, what in (("html", "web pages"), ("markdown", "Markdown files")):
        p = verbs.add(kind, export_static, f"every session as {what}: an index and a page per session, "
                      "transcript text escaped (safe to share)", f"chronicle export {kind} ~/sessions-{kind}",
                      under="export")
        p.add_argument("dir", metavar="DIR")
        p.add_argument("--session", metavar="ID", help="only this session (an id or a unique prefix)")



def ingest_sessions(ws: Workspace, args: argparse.Namespace) -> int:
    from chronicle.ingest.sessions import SessionIngester
    from chronicle.ingest.sources import SOURCES, default_roots
    from chronicle.secrets.scan import scan

    given = [Path(p) for p in args.paths]
    missing = [str(p) for p in given if not p.exists()]
    if missing:
        raise UsageError(f"no such file or folder: {', '.join(missing)}")
    roots = given or [r for r in default_roots() if r.is_dir()]
    log = ws.open_log()
    bar = Progress(0, "ingest", " MB")

    def behind(n: int) -> None:
        bar.total = n / 1e6

    ingester = SessionIngester(log, ws.data / "ingest.lock", quiet_seconds=args.quiet_seconds,
                               on_bytes=lambda n, name: bar.advance(n / 1e6, name), secrets_dir=ws.data,
                               on_behind=behind if bar.enabled else None)
    try:
        summary = ingester.run(roots)
    finally:
        bar.close()
    # what was recorded is scanned before the verb returns: each commit as it was made, then
    # anything else no scan has covered yet
    found = summary.secrets_found + scan(log, ws.data).findings
    if args.json:
        print_json({"roots": [str(r) for r in roots],
                    **{k: v for k, v in vars(summary).items() if k not in ("problems", "secrets_found")},
                    "problems": summary.problems[:1000], "secrets_found": found})
    else:
        if not roots:
            looked = "; ".join(f"{s.agent}: {s.roots_help}" for s in SOURCES)
            print(f"no coding-agent sessions folder found (looked in {looked}); give a PATH", file=sys.stderr)
        for p in summary.problems[:20]:
            print(f"  problem: {p}", file=sys.stderr)
        if len(summary.problems) > 20:
            print(f"  ... and {len(summary.problems) - 20} more (chronicle show ingest_errors)", file=sys.stderr)
        print(summary.line())
        if found:
            print(f"  {found} secrets found in what was recorded: never shown or exported unmasked "
                  "(`chronicle secrets list`)", file=sys.stderr)
    return EXIT_OK


def ingest_git_repo(ws: Workspace, args: argparse.Namespace) -> int:
    from chronicle.ingest.git import ingest_git

    summary = ingest_git(ws.open_log(), Path(args.repo), args.since)  # GitError (exit 2) names the repo
    if args.json:
        print_json(vars(summary))
    else:
        print(f"{summary.repo}: {summary.commits} commits, {summary.new} new")
    return EXIT_OK


def export_session(ws: Workspace, args: argparse.Namespace) -> int:
    from chronicle import export
    from chronicle.id_lookup import session_id
    from chronicle.ingest.sources import SESSION_KINDS

    snap = ws.open_log().snapshot()
    args.session_id = session_id(snap, args.session_id)  # a unique prefix will do
    files = [f for f in export.session_files(snap, args.session_id) if f.kind in SESSION_KINDS]
    # its own <id>.jsonl; else the one transcript whose lines carry its id (a file named otherwise)
    main = [f for f in files if Path(f.path).stem == args.session_id] or files
    if not main:
        raise UsageError(f"no ingested transcript for session {args.session_id!r}")
    if len(main) > 1:
        raise UsageError(f"session {args.session_id!r} is in {len(main)} transcripts "
                         f"({', '.join(sorted(f.path for f in main)[:5])}); `chronicle export sessions DIR --session "
                         f"{args.session_id}` writes them all")
    from chronicle.secrets.mask import Masker

    masker = Masker.of(ws)
    found, redacted = _findings_in(ws).get(main[0].path, (0, 0))
    done = export.write_one(snap, main[0], Path(args.output) if args.output else None,
                            transform=masker.bytes if args.redact else None)
    if found and not args.redact:
        print(f"chronicle export session: note: this transcript holds {found} secrets found by `chronicle secrets "
              "list`, exported as recorded (byte for byte); --redact masks them", file=sys.stderr)
    if redacted:
        lines = _redacted_lines(snap, main[0].path)
        print(f"chronicle export session: note: {redacted} secret value(s) were redacted from the log "
              f"(`chronicle secrets redact`): lines {', '.join(map(str, lines[:20]))}{' ...' if len(lines) > 20 else ''} "
              "read [redacted:RULE] where the value was, and differ from the file as it was recorded", file=sys.stderr)
    if args.output:
        _report([done], args.json)
    return EXIT_OK


def _findings_in(ws: Workspace) -> dict[str, tuple[int, int]]:
    """File path -> (findings in its lines neither allowed nor redacted, findings redacted), after
    scanning what is new."""
    import polars as pl

    from chronicle.commands.secrets import findings
    from chronicle.secrets.scan import scan

    scan(ws.open_log(), ws.data)
    table = findings(ws)
    if table is None:
        return {}
    counts = (table.filter(~pl.col("allowed")).group_by("where")
              .agg((~pl.col("redacted")).sum().alias("open"), pl.col("redacted").sum().alias("redacted")))
    return {where: (n, r) for where, n, r in counts.rows()}


def _redacted_lines(snap, path: str) -> list[int]:
    """Line numbers of the file's lines a redaction changed."""
    import polars as pl

    from chronicle.ingest.sources import LINE_EVENTS

    seqs = list(snap.redacted)
    lines: list[int] = []
    for t in LINE_EVENTS:
        if t in snap.types():
            lines += (snap.frame(t, ["seq", "path", "line_no"])
                      .filter(pl.col("seq").is_in(seqs) & (pl.col("path") == path)).collect()["line_no"].to_list())
    return sorted(lines)


def export_sessions(ws: Workspace, args: argparse.Namespace) -> int:
    from chronicle import export

    snap = ws.open_log().snapshot()
    files = export.session_files(snap, args.session) if args.session else export.sources(snap)
    out_dir = Path(args.dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    done = export.export_tree(snap, out_dir, files)
    _report(done, args.json)
    per_file = _findings_in(ws)
    found = sum(per_file.get(f.path, (0, 0))[0] for f in files)
    redacted = sum(per_file.get(f.path, (0, 0))[1] for f in files)
    if redacted:
        print(f"chronicle export sessions: note: {redacted} secret value(s) were redacted from the log; the lines that "
              "held them read [redacted:RULE] and differ from the files as recorded", file=sys.stderr)
    if found:
        print(f"chronicle export sessions: note: the files hold {found} secrets found by `chronicle secrets list`, "
              "exported as recorded (byte for byte); `chronicle export session ID --redact` masks a session's",
              file=sys.stderr)
    return EXIT_OK


def _report(done: list[Exported], as_json: bool) -> None:
    for d in done:
        if as_json:
            print_json({"source": d.source, "target": d.target, "bytes": d.bytes, "sha256": d.sha256})
    if not as_json:
        total = sum(d.bytes for d in done)
        print(f"exported {len(done)} files, {total:,} bytes; every chunk matched the hash recorded at ingest")


def export_static(ws: Workspace, args: argparse.Namespace) -> int:
    """`chronicle export html|markdown DIR`: an index and a page per session."""
    from chronicle import static_export
    from chronicle.id_lookup import session_id

    session = session_id(ws.open_log().snapshot(), args.session) if args.session else None
    what = args.command.rsplit(" ", 1)[-1]  # html or markdown
    done = static_export.export(ws, Path(args.dir), what, session)
    if args.json:
        print_json({"dir": str(done.dir), "sessions": done.sessions, "files": done.files})
    else:
        index = "index.html" if what == "html" else "index.md"
        print(f"exported {done.sessions} sessions to {done.dir} (open {done.dir / index})")
    return EXIT_OK
