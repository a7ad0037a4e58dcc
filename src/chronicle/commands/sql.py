"""`chronicle sql "SELECT ..."`: ad-hoc SQL over every table and every event type (Polars SQL).

Tables go by their names (``sessions``, ``api_calls``, ...); each event type by
its name in double quotes (``"llm.response"``, ``"session.line"``); ``events``
is the envelope of every event (seq, event_id, type, v, stream, recorded_at).
The tables a query names are brought up to date first (unless ``--stale``);
event types are read from the log as it is. Nothing is written.
"""

from __future__ import annotations

import argparse
import re

from chronicle.commands.verbs import Verbs
from chronicle.commands.output import out, terminal_width, write_rows
from chronicle.errors import EXIT_OK, UsageError
from chronicle.workspace import Workspace

HELP = "run SQL over every table and event type (Polars SQL); nothing is written"
EXAMPLES = """\
examples:
  chronicle sql "SELECT model, sum(output_tokens) AS out FROM api_calls GROUP BY model ORDER BY out DESC"
  chronicle sql "SELECT s.title, count(*) AS n FROM messages m JOIN sessions s USING (session_id) GROUP BY 1" --csv
  chronicle sql 'SELECT type, count(*) FROM events GROUP BY type' --json
  chronicle sql 'SELECT model_id, count(*) FROM "llm.response" GROUP BY 1'
"""


def register(verbs: Verbs) -> None:
    p = verbs.add("sql", run, HELP, "", json=False, epilog=EXAMPLES,
                  description=HELP + "\n\n" + (__doc__ or "").split("\n\n")[1])
    p.add_argument("query", metavar="QUERY", help="one SQL statement")
    p.add_argument("--stale", action="store_true", help="read the tables as they stand (no catch-up first)")
    p.add_argument("--limit", type=int, metavar="N", help="at most N rows")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="JSON Lines, a row per line")
    fmt.add_argument("--csv", action="store_true", help="CSV")


def named(query: str, names: list[str]) -> list[str]:
    """The names ``query`` mentions as whole words (a table it may read)."""
    return [n for n in names if re.search(rf'(?<![\w.]){re.escape(n)}(?![\w.])', query)]


def run(ws: Workspace, args: argparse.Namespace) -> int:
    import polars as pl

    from chronicle.committed import Committed
    from chronicle.events import CATALOG
    from chronicle.projection import Engine, read_tables

    if args.limit is not None and args.limit < 0:
        raise UsageError("--limit must be 0 or more")
    engine = Engine.of(ws)
    tables = sorted(t for p in engine.projections.values() for t in p.outputs)
    wanted = named(args.query, tables)
    snap = ws.open_log().snapshot()
    if wanted and not args.stale:
        engine.run(snap, wanted)
    ctx = pl.SQLContext()
    committed = Committed.at(ws.tables_dir)
    built = [t for t in wanted if committed.projection_of(t) is not None]
    for name, df in (read_tables(ws.tables_dir, built)[0] if built else {}).items():
        ctx.register(name, df.lazy())
    for type_name in named(args.query, sorted(CATALOG)):
        ctx.register(type_name, snap.frame(type_name))
    if named(args.query, ["events"]):
        ctx.register("events", snap.envelope())
    try:
        result = ctx.execute(args.query).collect()
    except (pl.exceptions.SQLInterfaceError, pl.exceptions.SQLSyntaxError, pl.exceptions.ColumnNotFoundError,
            pl.exceptions.InvalidOperationError, pl.exceptions.ComputeError, pl.exceptions.SchemaError) as exc:
        message = " ".join(str(exc).split())
        hint = ""
        if "not found" in message and "relation" in message:
            hint = f" (tables: {', '.join(tables)}; event types in double quotes, e.g. \"llm.response\"; events)"
        raise UsageError(f"{message}{hint}") from None
    if args.limit is not None:
        result = result.head(args.limit)
    from chronicle.secrets.mask import Masker

    result = Masker.of(ws).frame(result)  # secrets in recorded text are never shown
    if not write_rows(result, args):
        with pl.Config(tbl_rows=-1, tbl_cols=-1, fmt_str_lengths=60, tbl_width_chars=terminal_width()):
            out(str(result))
    return EXIT_OK
