"""`chronicle search QUERY`: where did I do that? Sessions, commits and documents.

The fast path (the index is as current as the log: the usual case) loads
neither Polars nor Arrow: ``chronicle.entry`` sends a search here before the
rest of the CLI is imported. Otherwise the index takes in the new events
first (see ``chronicle.search``).
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
from datetime import datetime, timezone

from chronicle.commands.verbs import Verbs
from chronicle.errors import UsageError
from chronicle import search as index
from chronicle.store.head import log_head, redactions
from chronicle.errors import EXIT_OK
from chronicle.workspace import Workspace

HELP = "full-text search of sessions, commits and documents: words, \"phrases\", AND/OR/NOT, prefix*"
EXAMPLES = """\
examples:
  chronicle search "flaky test" --role user
  chronicle search 'pytest AND (timeout OR hang*)' --project /home/ana/repo --since 2026-11-01
  chronicle search deprecat* --tool Bash --context 2
  chronicle search novelty --docs --stage evaluation --model echo_small --sort time --json

A word with punctuation (sk-test, cli.py) is searched as the phrase of its parts.
--role user is only what a person typed (not tool results, isMeta records, compaction
summaries or harness notifications).
"""


class SearchError(UsageError):
    """Bad query or options; exit 2."""


def register(verbs: Verbs) -> None:
    add_arguments(verbs.add("search", run, HELP, "", json=False, epilog=EXAMPLES))


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("query", metavar="QUERY", help='words, "phrases", AND/OR/NOT, (groups), prefix*')
    p.add_argument("--role", choices=["user", "assistant", "tool", "thinking", "system", "prompt", "response",
                                      "parsed", "commit"])
    p.add_argument("--project", help="a session's working directory (or a commit's repository)")
    p.add_argument("--session", metavar="ID")
    p.add_argument("--agent", metavar="ID", help="a subagent's id")
    p.add_argument("--tool", metavar="NAME", help="tool calls and results of this tool (e.g. Bash)")
    p.add_argument("--stage", help="documents of this stage (draft, essay, evaluation)")
    p.add_argument("--template")
    p.add_argument("--model")
    p.add_argument("--cohort")
    kinds = p.add_mutually_exclusive_group()
    kinds.add_argument("--docs", action="store_true", help="only documents (prompts, responses, parsed texts)")
    kinds.add_argument("--sessions", action="store_true", help="only coding-agent sessions")
    p.add_argument("--since", metavar="TIME", help="ISO date or time (UTC if no zone)")
    p.add_argument("--until", metavar="TIME")
    p.add_argument("--sort", choices=["rank", "time"], default="rank")
    p.add_argument("--context", type=int, default=0, metavar="N", help="N units before and after each hit")
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--stale", action="store_true", help="search the index as it stands, without catching up")
    p.add_argument("--json", action="store_true", help="JSON Lines, one hit per line")


def _time(text: str | None, name: str) -> int | None:
    if text is None:
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise SearchError(f"{name}: {text!r} is not an ISO-8601 date or time") from None
    when = when if when.tzinfo else when.replace(tzinfo=timezone.utc)
    return int(when.timestamp() * 1_000_000)


def _filters(args: argparse.Namespace) -> dict[str, str]:
    chosen = {"role": args.role, "project": args.project, "session_id": args.session, "agent_id": args.agent,
              "tool": args.tool, "stage": args.stage, "template": args.template, "model": args.model,
              "cohort": args.cohort}
    if args.docs:
        chosen["kind"] = "document"
    elif args.sessions:
        chosen["kind"] = "session"
    return {k: v for k, v in chosen.items() if v is not None}


def current(ws: Workspace) -> bool:
    """Whether the index answers for the whole log now, judged without Polars."""
    return index.current(ws.tables_dir, log_head(ws.log_dir), redactions(ws.log_dir))


def catch_up(ws: Workspace, wait: float | None = None) -> str:
    """Bring the index up to date with the log (loads Polars; waits for the log's lock as --wait says)."""
    from chronicle.store.fsutil import LockWaits

    if LockWaits.notice is None:  # the fast entry did not set it up
        LockWaits.notice = lambda text: print(f"chronicle search: {text}", file=sys.stderr, flush=True)
        LockWaits.give_up_after = wait
    return index.catch_up(ws.tables_dir, ws.open_log().snapshot())


def run(ws: Workspace, args: argparse.Namespace) -> int:
    try:
        query = index.compile_query(args.query)
    except index.QueryError as exc:
        raise SearchError(str(exc)) from None
    if args.limit < 1 or args.context < 0:
        raise SearchError("--limit must be at least 1 and --context at least 0")
    filters = _filters(args)
    since, until = _time(args.since, "--since"), _time(args.until, "--until")
    if not ws.log_dir.joinpath("MANIFEST").exists():
        from chronicle.store.errors import NotAWorkspace

        raise NotAWorkspace(f"{ws.root} is not a workspace (no data/log): run `chronicle init` or pass --root")
    if not args.stale and not current(ws):
        catch_up(ws, getattr(args, "wait", None))
    if not (ws.tables_dir / index.INDEX_NAME).exists():
        raise SearchError("no search index yet: run `chronicle search` without --stale to build it")
    tty = sys.stdout.isatty() and not args.json
    marks = ("\033[1;33m", "\033[0m") if tty else ("[", "]")
    with sqlite3.connect(f"file:{ws.tables_dir / index.INDEX_NAME}?mode=ro", uri=True) as db:
        try:
            hits = index.search(db, query, filters, since_us=since, until_us=until, sort=args.sort,
                                limit=args.limit, marks=marks)
        except sqlite3.OperationalError as exc:
            raise SearchError(f"query {args.query!r}: {exc}") from None
        for hit in hits:
            around = index.context(db, hit, args.context)
            (_print_json if args.json else _print_text)(hit, around, ws)
    if not hits and not args.json:
        print(f"no matches for {args.query!r}" + (f" with {_describe(filters)}" if filters else ""), file=sys.stderr)
    return EXIT_OK


def _describe(filters: dict[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in filters.items())


def _when(us: int | None) -> str | None:
    return None if us is None else datetime.fromtimestamp(us / 1e6, timezone.utc).isoformat(timespec="seconds")


def _opens(hit: index.Hit) -> list[str]:
    if hit.kind == "session" and hit.session_id:
        return [f"chronicle history session {hit.session_id}", f"chronicle export session {hit.session_id}",
                f"http://127.0.0.1:8765/sessions/{hit.session_id}#seq-{hit.seq}"]
    if hit.kind == "document" and hit.doc_id:
        return [f"chronicle history doc {hit.doc_id}", f"http://127.0.0.1:8765/documents/{hit.doc_id}"]
    return [f"chronicle log --from-seq {hit.seq} --to-seq {hit.seq}"]


def _print_json(hit: index.Hit, around: list[tuple[int, str, str]], ws: Workspace) -> None:
    record = {k: v for k, v in hit._asdict().items() if k != "time_us"}
    record.update(time=_when(hit.time_us), open=_opens(hit))
    if around:
        record["context"] = [{"seq": s, "role": r, "text": t} for s, r, t in around]
    sys.stdout.write(json.dumps(record, ensure_ascii=False) + "\n")


def _print_text(hit: index.Hit, around: list[tuple[int, str, str]], ws: Workspace) -> None:
    where = (f"session {hit.session_id}" + (f" (agent {hit.agent_id})" if hit.agent_id else "")
             if hit.kind == "session" else
             f"doc {hit.doc_id} ({hit.stage}, {hit.template}, {hit.model})" if hit.kind == "document" else
             f"commit {hit.doc_id} in {hit.project}")
    role = hit.role + (f":{hit.tool}" if hit.tool else "")
    print(f"{_when(hit.time_us) or '-'}  {role:<14} {where}  seq {hit.seq}")
    for s, r, t in around:
        if s < hit.seq:
            print(f"    {r:>10} | {' '.join(t.split())[:160]}")
    print(f"    {'>>':>10} | {' '.join(hit.snippet.split())}")
    for s, r, t in around:
        if s > hit.seq:
            print(f"    {r:>10} | {' '.join(t.split())[:160]}")
    print(f"    open: {_opens(hit)[0]}")
    print()
