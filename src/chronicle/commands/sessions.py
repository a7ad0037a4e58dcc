"""`chronicle ingest sessions|git` and `chronicle export session(s)`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from typing import TYPE_CHECKING

# Light at import (the command line imports every verb's module); the store and Polars when a verb runs.
from chronicle.commands.output import print_json
from chronicle.errors import EXIT_OK, EXIT_USAGE
from chronicle.progress import Progress
from chronicle.workspace import Workspace

if TYPE_CHECKING:
    from chronicle.export import Exported




def ingest_sessions(ws: Workspace, args: argparse.Namespace) -> int:
    from chronicle.ingest.sessions import SessionIngester, bytes_behind, cursors, known_kinds
    from chronicle.ingest.sources import SOURCES, default_roots, discover

    given = [Path(p) for p in args.paths]
    missing = [str(p) for p in given if not p.exists()]
    if missing:
        print(f"chronicle ingest sessions: error: no such file or folder: {', '.join(missing)}", file=sys.stderr)
        return EXIT_USAGE
    roots = given or [r for r in default_roots() if r.is_dir()]
    log = ws.open_log()
    known = cursors(log.snapshot())
    files = discover(roots, known_kinds(known))
    bar = Progress(bytes_behind(files, known) / 1e6, "ingest", " MB")
    ingester = SessionIngester(log, ws.data / "ingest.lock", quiet_seconds=args.quiet_seconds,
                               on_bytes=lambda n, name: bar.advance(n / 1e6, name))
    try:
        summary = ingester.run(roots, files)
    finally:
        bar.close()
    if args.json:
        print_json({"roots": [str(r) for r in roots], **{k: v for k, v in vars(summary).items() if k != "problems"},
                     "problems": summary.problems[:1000]})
    else:
        if not roots:
            looked = "; ".join(f"{s.agent}: {s.roots_help}" for s in SOURCES)
            print(f"no coding-agent sessions folder found (looked in {looked}); give a PATH", file=sys.stderr)
        for p in summary.problems[:20]:
            print(f"  problem: {p}", file=sys.stderr)
        if len(summary.problems) > 20:
            print(f"  ... and {len(summary.problems) - 20} more (chronicle show ingest_errors)", file=sys.stderr)
        print(summary.line())
    return EXIT_OK


def ingest_git_repo(ws: Workspace, args: argparse.Namespace) -> int:
    from chronicle.ingest.git import GitError, ingest_git

    try:
        summary = ingest_git(ws.open_log(), Path(args.repo), args.since)
    except GitError as exc:
        print(f"chronicle ingest git: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
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
        print(f"chronicle export session: error: no ingested transcript for session {args.session_id!r}",
              file=sys.stderr)
        return EXIT_USAGE
    if len(main) > 1:
        print(f"chronicle export session: error: session {args.session_id!r} is in {len(main)} transcripts "
              f"({', '.join(sorted(f.path for f in main)[:5])}); `chronicle export sessions DIR --session "
              f"{args.session_id}` writes them all", file=sys.stderr)
        return EXIT_USAGE
    done = export.write_one(snap, main[0], Path(args.output) if args.output else None)
    if args.output:
        _report([done], args.json)
    return EXIT_OK


def export_sessions(ws: Workspace, args: argparse.Namespace) -> int:
    from chronicle import export

    snap = ws.open_log().snapshot()
    files = export.session_files(snap, args.session) if args.session else export.sources(snap)
    out_dir = Path(args.dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    done = export.export_tree(snap, out_dir, files)
    _report(done, args.json)
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
    done = static_export.export(ws, Path(args.dir), args.what, session)
    if args.json:
        print_json({"dir": str(done.dir), "sessions": done.sessions, "files": done.files})
    else:
        index = "index.html" if args.what == "html" else "index.md"
        print(f"exported {done.sessions} sessions to {done.dir} (open {done.dir / index})")
    return EXIT_OK
