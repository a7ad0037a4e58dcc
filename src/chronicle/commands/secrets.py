"""`chronicle secrets scan|list|allow`: secrets found in the log, never shown."""

from __future__ import annotations

import argparse

from chronicle.commands.output import out, print_json
from chronicle.commands.verbs import Verbs
from chronicle.errors import EXIT_OK, UsageError
from chronicle.workspace import Workspace

HELP = "secrets in recorded text (keys, tokens, private keys, .env lines): found, listed, allowed"


def register(verbs: Verbs) -> None:
    verbs.group("secrets", HELP, "chronicle secrets list")
    p = verbs.add("scan", cmd_scan, "scan what the last scan did not cover (every event again when the rules "
                  "changed, or with --full); resumable", "chronicle secrets scan --full", under="secrets")
    p.add_argument("--full", action="store_true", help="scan every event again")
    p = verbs.add("list", cmd_list, "the findings (where, which rule; never the value), after scanning new events",
                  "chronicle secrets list --all --json", under="secrets")
    p.add_argument("--all", action="store_true", help="allowed findings too")
    p = verbs.add("allow", cmd_allow, "mark a finding as not a secret: it is shown again",
                  "chronicle secrets allow s1a2b3c4d5e6 --reason 'a test fixture'", under="secrets")
    p.add_argument("finding_id", metavar="ID", help="a finding's id (chronicle secrets list)")
    p.add_argument("--reason", metavar="TEXT", help="why it is not a secret (recorded)")


def cmd_scan(ws: Workspace, args: argparse.Namespace) -> int:
    from chronicle.secrets.scan import scan

    s = scan(ws.open_log(), ws.data, full=args.full)
    if args.json:
        print_json(vars(s))
    elif s.upto_seq == s.start_seq:
        out(f"nothing new to scan (scanned up to seq {s.upto_seq:,}, rules {s.rules_version})")
    else:
        out(f"scanned seqs {s.start_seq + 1:,}..{s.upto_seq:,}{' (every event: ' + ('--full' if args.full else 'new rules') + ')' if s.full else ''}: "
            f"{s.findings} findings (rules {s.rules_version}); `chronicle secrets list` shows them")
    return EXIT_OK


def findings(ws: Workspace):
    """Every finding, with where it is and whether it was allowed."""
    import polars as pl

    snap = ws.open_log().snapshot()
    present = set(snap.types())
    if "secret.found" not in present:
        return None
    found = snap.frame("secret.found", ["seq", "finding_id", "target_seq", "target_type", "target_stream", "field",
                                        "start", "end", "rule"]).collect()
    allowed = (snap.frame("secret.allowed", ["finding_id", "reason"]).collect() if "secret.allowed" in present
               else pl.DataFrame(schema={"finding_id": pl.String, "reason": pl.String}))
    lines = [snap.frame(t, ["seq", "line_no"]).filter(pl.col("seq").is_in(found["target_seq"].implode())).collect()
             for t in ("session.line", "codex.line") if t in present]
    line_no = pl.concat(lines) if lines else pl.DataFrame(schema={"seq": pl.Int64, "line_no": pl.Int64})
    return (found.unique("finding_id", keep="first")
            .join(line_no.rename({"seq": "target_seq"}), on="target_seq", how="left")
            .join(allowed.unique("finding_id", keep="last"), on="finding_id", how="left")
            .with_columns(pl.col("finding_id").alias("id"), pl.col("reason").is_not_null().alias("allowed"),
                          pl.col("target_stream").str.strip_prefix("source:").alias("where"))
            .select("id", "rule", "target_type", "target_seq", "where", "line_no", "field", "start", "end",
                    "allowed", "reason")
            .sort("target_seq", "start"))


def cmd_list(ws: Workspace, args: argparse.Namespace) -> int:
    import polars as pl

    from chronicle.secrets.scan import scan

    scan(ws.open_log(), ws.data)
    table = findings(ws)
    if table is not None and not args.all:
        table = table.filter(~pl.col("allowed"))
    if table is None or table.height == 0:
        if not args.json:
            out("no findings" + ("" if args.all else " (not allowed)"))
        return EXIT_OK
    if args.json:
        for row in table.iter_rows(named=True):
            print_json(row)
        return EXIT_OK
    with pl.Config(tbl_rows=-1, tbl_hide_dataframe_shape=True, tbl_hide_column_data_types=True, fmt_str_lengths=60):
        out(str(table.drop("reason") if not args.all else table))
    out(f"{table.height} findings; values are never shown (`chronicle secrets allow ID` marks a false positive)")
    return EXIT_OK


def cmd_allow(ws: Workspace, args: argparse.Namespace) -> int:
    import polars as pl

    from chronicle.events import SecretAllowed

    table = findings(ws)
    row = None if table is None else table.filter(pl.col("id") == args.finding_id)
    if row is None or row.height == 0:
        raise UsageError(f"no finding {args.finding_id!r} (`chronicle secrets list --all` lists them)")
    if row["allowed"][0]:
        out(f"{args.finding_id} is allowed already ({row['reason'][0] or 'no reason given'})")
        return EXIT_OK
    ws.open_log().append([SecretAllowed(stream="secrets", finding_id=args.finding_id, reason=args.reason or "")])
    out(f"allowed {args.finding_id} ({row['rule'][0]} in {row['where'][0]}): it is shown again")
    return EXIT_OK
