"""`chronicle remote add|list`, `chronicle push` and `chronicle pull`: logs on S3-compatible storage.

See ``chronicle.remote`` for what a push and a pull promise. Credentials come
from the standard AWS environment (``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``, ``AWS_REGION``) and
``AWS_ENDPOINT_URL`` or ``--endpoint`` points at any S3-compatible store; none
of it is written anywhere.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict

from chronicle.commands.output import out, print_json
from chronicle.commands.verbs import Verbs
from chronicle.errors import EXIT_OK
from chronicle.workspace import Workspace

EXAMPLES = """\
examples:
  export AWS_ACCESS_KEY_ID=... AWS_SECRET_ACCESS_KEY=...   # or a session token; never written anywhere
  chronicle remote add team s3://research-logs/chronicle
  chronicle remote add minio s3://logs --endpoint http://127.0.0.1:9000
  chronicle push team
  chronicle pull team
  chronicle publish team          # the tables as Delta Lake tables: s3://.../tables/<producer>/<table>
"""


def register(verbs: Verbs) -> None:
    verbs.group("remote", "object storage remotes this workspace pushes to and pulls from",
                "chronicle remote add team s3://bucket/prefix")
    p = verbs.add("add", cmd_add, "add a remote (s3://bucket[/prefix]) and claim this workspace's producer id on it",
                  "chronicle remote add team s3://research-logs/chronicle", under="remote", epilog=EXAMPLES)
    p.add_argument("name", metavar="NAME", help="what to call it here")
    p.add_argument("url", metavar="URL", help="s3://bucket[/prefix]")
    p.add_argument("--endpoint", metavar="URL", help="an S3-compatible endpoint (default: $AWS_ENDPOINT_URL, or AWS)")
    p.add_argument("--producer", metavar="ID", help="this workspace's producer id, on first use (default: host name "
                                                    "and 6 random hex digits)")
    verbs.add("list", cmd_list, "the remotes, and this workspace's producer id", "chronicle remote list --json",
              under="remote")
    p = verbs.add("push", cmd_push, "send the remote what it lacks of this log (sealed first); idempotent, resumable; "
                  "refused while it would send secrets neither redacted nor allowed", "chronicle push team",
                  epilog=EXAMPLES)
    p.add_argument("name", metavar="NAME", nargs="?", help="the remote (default: the only one)")
    p.add_argument("--include-secrets", action="store_true",
                   help="send secrets found (chronicle secrets list) as they are, instead of refusing")
    p = verbs.add("publish", cmd_publish, "the projection tables on the remote as Delta Lake tables (caught up first, "
                  "secrets masked); one commit per table per publish", "chronicle publish team --tables usage_daily",
                  epilog=EXAMPLES)
    p.add_argument("name", metavar="NAME", nargs="?", help="the remote (default: the only one)")
    p.add_argument("--tables", metavar="A,B", help="only these tables (default: every table)")
    p = verbs.add("pull", cmd_pull, "mirror every other producer's log from the remote into data/remotes/NAME/",
                  "chronicle pull team", epilog=EXAMPLES)
    p.add_argument("name", metavar="NAME", nargs="?", help="the remote (default: the only one)")


def cmd_add(ws: Workspace, args: argparse.Namespace) -> int:
    from chronicle.remote import add_remote

    me = add_remote(ws.data, args.name, args.url, args.endpoint, args.producer)
    if args.json:
        print_json({"remote": args.name, "url": args.url, "endpoint": args.endpoint, "producer": me.id})
    else:
        out(f"remote {args.name}: {args.url}; this workspace pushes as producer {me.id}")
    return EXIT_OK


def cmd_list(ws: Workspace, args: argparse.Namespace) -> int:
    from chronicle.remote import PRODUCER_FILE, producer, remotes

    known = remotes(ws.data)
    me = producer(ws.data).id if (ws.data / PRODUCER_FILE).exists() else None
    if args.json:
        for name, config in sorted(known.items()):
            print_json({"remote": name, "url": config.url, "endpoint": config.endpoint, "producer": me})
        return EXIT_OK
    if not known:
        out("no remotes (chronicle remote add NAME s3://bucket/prefix)")
    for name, config in sorted(known.items()):
        out(f"{name}\t{config.url}" + (f"\t(endpoint {config.endpoint})" if config.endpoint else ""))
    if me:
        out(f"this workspace is producer {me}")
    return EXIT_OK


def cmd_push(ws: Workspace, args: argparse.Namespace) -> int:
    from chronicle.progress import Progress
    from chronicle.remote import push

    bar = Progress(0, "push", unit="MB")
    try:
        done = push(ws.open_log(), ws.data, args.name, on_file=lambda n, name: bar.advance(n / 1e6, name),
                    include_secrets=args.include_secrets)
    finally:
        bar.close()
    if args.json:
        print_json(asdict(done))
    elif done.lines == 0:
        out(f"{done.remote}: up to date ({done.remote_lines} MANIFEST lines of producer {done.producer})")
    else:
        out(f"{done.remote}: pushed {done.lines} MANIFEST lines and {done.files} files ({done.bytes / 1e6:.1f} MB) "
            f"as producer {done.producer}" + (f"; {done.removed} redacted files removed there" if done.removed else ""))
    return EXIT_OK


def cmd_publish(ws: Workspace, args: argparse.Namespace) -> int:
    from chronicle.publish import publish

    tables = [t.strip() for t in args.tables.split(",") if t.strip()] if args.tables else None
    done = publish(ws, args.name, tables)
    if args.json:
        for table, t in done.tables.items():
            print_json({"remote": done.remote, "producer": done.producer, "seq": done.seq, "table": table, **t})
        return EXIT_OK
    for table, t in done.tables.items():
        out(f"{table:<24} {t['rows']:>9,} rows  version {t['version']:<4} {t['uri']}")
    out(f"published {len(done.tables)} tables as of seq {done.seq:,} (producer {done.producer}); read them with "
        "any Delta Lake reader, e.g. polars.scan_delta(URI)")
    return EXIT_OK


def cmd_pull(ws: Workspace, args: argparse.Namespace) -> int:
    from chronicle.progress import Progress
    from chronicle.remote import pull

    bar = Progress(0, "pull", unit="MB")
    try:
        done = pull(ws.data, args.name, on_file=lambda n, name: bar.advance(n / 1e6, name))
    finally:
        bar.close()
    if args.json:
        for p in done.producers:
            print_json({"remote": done.remote, **asdict(p)})
        return _short(done)
    if not done.producers:
        out(f"{done.remote}: no other producer has pushed yet")
    for p in done.producers:
        line = f"{done.remote}/{p.producer}: " + (f"{p.lines} MANIFEST lines, {p.files} files ({p.bytes / 1e6:.1f} MB)"
                                                  if p.lines else "up to date")
        if p.removed:
            line += f"; {p.removed} redacted files removed"
        out(line)
    return _short(done)


def _short(done) -> int:
    """A producer pulled only up to a line whose files the remote lacks: an error naming them (what
    came before is mirrored; pulling again after a push under way finishes)."""
    from chronicle.store.object_storage import RemoteError

    short = [f"{p.producer}: {p.waiting}" for p in done.producers if p.waiting]
    if short:
        raise RemoteError("pulled only up to the files the remote lacks (deleted there, or a push still under "
                          "way: pull again): " + "; ".join(short))
    return EXIT_OK
