"""`chronicle show TABLE`: a table, brought up to date first, for people or for scripts.

For people it fits the terminal: a projection's ``VIEW`` picks the columns worth
a glance (``--columns all`` shows every one), at most 50 rows are printed, and
a last line says how many rows and columns were left out. ``--json`` and
``--csv`` write every column of every row the options keep.
"""

from __future__ import annotations

import argparse

from chronicle.commands.verbs import Verbs
from chronicle.commands.output import out, terminal_width, write_rows
from chronicle.errors import EXIT_OK, UsageError
from chronicle.workspace import Workspace

HELP = "print a table (brought up to date with the log first)"
EXAMPLES = """\
examples:
  chronicle show sessions                                  # the columns worth a glance, 50 rows
  chronicle show sessions --columns all --limit 5
  chronicle show api_calls --where "model LIKE '%opus%' AND output_tokens > 1000" --sort output_tokens:desc
  chronicle show usage_daily --columns day,model,cost_usd --csv
"""
ROWS = 50


def register(verbs: Verbs) -> None:
    p = verbs.add("show", run, HELP, "", epilog=EXAMPLES, served=True)
    p.add_argument("table")
    p.add_argument("--columns", metavar="A,B,...", help="these columns, in this order (`all`: every column)")
    p.add_argument("--where", metavar="CONDITION", help="keep rows where this SQL condition holds (Polars SQL)")
    p.add_argument("--sort", metavar="A,B:desc", help="sort by these columns (:desc sorts one descending)")
    p.add_argument("--limit", type=int, metavar="N", help="at most N rows")
    p.add_argument("--stale", action="store_true", help="print the table as it stands, without bringing it up to date")
    p.add_argument("--csv", action="store_true", help="CSV output")
    p.add_argument("--union", action="store_true", help="the table over every producer's log (this one and every "
                                                        "mirror pulled: chronicle pull)")


def run(ws: Workspace, args: argparse.Namespace) -> int:
    import polars as pl

    from chronicle.projection import Engine, read_tables
    from chronicle.store import StoreError

    if args.limit is not None and args.limit < 0:
        raise UsageError(f"--limit must be 0 or more (got {args.limit})")
    engine = Engine.of(ws)
    owner = {t: p for p in engine.projections.values() for t in p.outputs}
    if args.table not in owner:
        raise UsageError(f"no table named {args.table!r} (known tables: {', '.join(sorted(owner))})")
    tables_dir, snapshot = ws.tables_dir, ws.open_log().snapshot
    if args.union:
        from chronicle.union import union_dir, union_snapshot

        tables_dir, snapshot = union_dir(ws), lambda: union_snapshot(ws)
    if not args.stale:  # what was recorded is in the very next show: the table is brought up to date first
        engine.run(snapshot(), [args.table], out_dir=tables_dir if args.union else None)
    try:
        df = read_tables(tables_dir, [args.table])[0][args.table]
    except FileNotFoundError:
        raise UsageError(f"table {args.table!r} has not been built yet (run `chronicle rebuild`, or drop --stale)") from None
    except (OSError, pl.exceptions.PolarsError) as exc:
        raise StoreError(f"{ws.tables_dir / args.table}.parquet: cannot be read ({type(exc).__name__}); "
                         "`chronicle show` without --stale rebuilds it") from None
    for_people = not (args.json or args.csv)
    view = owner[args.table].views.get(args.table) if for_people and args.columns is None else None
    if view and args.union:  # its own columns only (a VIEW's joins read this workspace's tables)
        view = [c for c in view if "." not in c]
    if view and not args.union:
        df = _with_other_tables(ws, engine, df, view, args.stale)
        view = [c.split(".", 1)[-1] for c in view]
    df = _shaped(df, args, pl)
    columns = _columns(df, args.columns, view)
    rows = df.select(columns) if args.limit is None else df.select(columns).head(args.limit)
    from chronicle.secrets.mask import Masker

    masker = Masker.of(ws)  # secrets in recorded text are never shown
    if not write_rows(masker.frame(rows), args):
        _print(masker.frame(df.select(columns).head(ROWS if args.limit is None else args.limit)), df.height, df.width,
               columns, pl)
    return EXIT_OK


def _with_other_tables(ws: Workspace, engine, df, view: list[str], stale: bool):
    """A VIEW may show a column of another table (``usage_by_session.cost_usd``): joined
    on the columns the two tables share, that table brought up to date first."""
    from chronicle.projection import read_tables

    wanted: dict[str, list[str]] = {}
    for column in view:
        if "." in column:
            table, name = column.split(".", 1)
            wanted.setdefault(table, []).append(name)
    if not wanted:
        return df
    if not stale:
        engine.run(ws.open_log().snapshot(), sorted(wanted))
    try:
        others = read_tables(ws.tables_dir, sorted(wanted))[0]
    except FileNotFoundError:
        return df
    for table, names in wanted.items():
        keys = [c for c in others[table].columns if c in df.columns and c not in names]
        if keys:
            df = df.join(others[table].select(*keys, *names), on=keys, how="left")
    return df


def _shaped(df, args: argparse.Namespace, pl):
    if args.where:
        try:
            df = df.filter(pl.sql_expr(args.where))
        except (pl.exceptions.PolarsError, ValueError) as exc:
            raise UsageError(f"--where: {' '.join(str(exc).split())[:300]} (columns: {', '.join(df.columns)})") from None
    if args.sort:
        keys = [k.strip() for k in args.sort.split(",") if k.strip()]
        descending = [k.lower().endswith(":desc") or k.startswith("-") for k in keys]
        names = [k.lstrip("-").rsplit(":", 1)[0] if k.lower().endswith((":desc", ":asc")) else k.lstrip("-")
                 for k in keys]
        missing = [n for n in names if n not in df.columns]
        if missing:
            raise UsageError(f"--sort: no column {missing[0]!r} (columns: {', '.join(df.columns)})")
        df = df.sort(names, descending=descending, nulls_last=True)
    return df


def _columns(df, given: str | None, view: list[str] | None) -> list[str]:
    if given and given != "all":
        chosen = [c.strip() for c in given.split(",") if c.strip()]
        missing = [c for c in chosen if c not in df.columns]
        if missing:
            raise UsageError(f"--columns: no column {missing[0]!r} (columns: {', '.join(df.columns)})")
        return chosen
    if given is None and view:
        return [c for c in view if c in df.columns]
    return list(df.columns)


def _print(shown, height: int, width: int, columns: list[str], pl) -> None:
    with pl.Config(tbl_rows=-1, tbl_cols=-1, fmt_str_lengths=48, tbl_width_chars=terminal_width(),
                   tbl_hide_dataframe_shape=True):
        out(str(shown))
    left = [f"{height - shown.height:,} more rows (--limit N, --where, --json)" if height > shown.height else "",
            f"{width - len(columns)} more columns (--columns all)" if width > len(columns) else ""]
    said = "; ".join(x for x in left if x)
    out(f"{shown.height:,} of {height:,} rows, {len(columns)} of {width} columns" + (f"; {said}" if said else ""))
