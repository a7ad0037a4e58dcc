"""The tables' verbs: `rebuild`, `replay`, `tables`."""

from __future__ import annotations

import argparse
from pathlib import Path

from chronicle.commands.log import snapshot_as_of
from chronicle.commands.output import out, print_json
from chronicle.commands.verbs import Verbs
from chronicle.errors import EXIT_OK, UsageError
from chronicle.workspace import Workspace


def register(verbs: Verbs) -> None:
    p = verbs.add("rebuild", cmd_rebuild, "bring projections (tables) up to date; --full rebuilds from scratch",
                  "chronicle rebuild events_by_type --as-of 2026-11-01T00:00:00Z",
                  # a full rebuild or one as of a seq takes seconds and a gigabyte: in its own process
                  served=lambda a: not a.full and a.as_of is None)
    p.add_argument("names", nargs="*", metavar="NAME", help="projection or table names (default: all)")
    p.add_argument("--as-of", help="SEQ or ISO time; writes to data/tables/as-of/seq-N")
    p.add_argument("--full", action="store_true", help="ignore checkpoints and rebuild from the whole log")
    p.add_argument("--union", action="store_true", help="over every producer's log (this one and every mirror "
                                                        "pulled), into data/tables/union")
    verbs.add("tables", cmd_tables, "list tables, their projection, rows and checkpoint", "chronicle tables",
              served=True)
    p = verbs.add("replay", cmd_replay, "rebuild tables as they were at a seq or time, into a separate folder",
                  "chronicle replay --as-of 2026-10-01T00:00:00Z --out /tmp/october usage")
    p.add_argument("names", nargs="*", metavar="NAME", help="projection or table names (default: all)")
    p.add_argument("--as-of", required=True, help="SEQ or ISO time")
    p.add_argument("--out", metavar="DIR", help="where to write (default: data/tables/as-of/seq-N)")


def cmd_rebuild(ws: Workspace, args: argparse.Namespace) -> int:
    from chronicle.projection import Engine

    engine = Engine.of(ws)
    if args.union:
        from chronicle.union import union_dir, union_snapshot

        if args.as_of:
            raise UsageError("--union and --as-of do not go together (each producer's log has its own seqs)")
        snap, out_dir = union_snapshot(ws), union_dir(ws)
    else:
        snap = snapshot_as_of(ws, args.as_of)
        out_dir = ws.tables_dir / "as-of" / f"seq-{snap.head}" if args.as_of else None
    outcomes = engine.run(snap, args.names, full=args.full or bool(args.as_of), out_dir=out_dir)
    for o in outcomes:
        if args.json:
            print_json({"projection": o.name, "action": o.action, "seq": o.seq, "rows": o.rows})
        else:
            tables = ", ".join(f"{t} ({n:,} rows)" for t, n in o.rows.items())
            out(f"{o.name:<20} {o.action:<8} at seq {o.seq}: {tables}")
    if out_dir is not None and not args.json:
        what = f"over {len(snap.parts)} producers ({snap.head:,} events)" if args.union else f"as of seq {snap.head}"
        out(f"tables {what} written to {out_dir}")
    return EXIT_OK


def cmd_replay(ws: Workspace, args: argparse.Namespace) -> int:
    from chronicle.projection import Engine

    snap = snapshot_as_of(ws, args.as_of)
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


def cmd_tables(ws: Workspace, args: argparse.Namespace) -> int:
    import polars as pl

    from chronicle.committed import table_files
    from chronicle.projection import Engine

    engine = Engine.of(ws)
    checkpoints = engine.checkpoints()
    snap = ws.open_log().snapshot()
    rows = []
    for p in engine.projections.values():
        cp = checkpoints.get(p.name)
        state = engine.state(p, cp, snap.head, redactions=len(snap.redactions))
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
