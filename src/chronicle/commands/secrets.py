"""`chronicle secrets scan|list|allow|redact`: secrets found in the log, never shown, removable."""

from __future__ import annotations

import argparse

from chronicle.commands.output import out, print_json
from chronicle.commands.verbs import Verbs
from chronicle.errors import EXIT_OK, UsageError
from chronicle.workspace import Workspace

HELP = "secrets in recorded text (keys, tokens, private keys, .env lines): found, listed, allowed, redacted"


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
    p = verbs.add("redact", cmd_redact, "take findings' values out of the log itself (every event holding them), "
                  "the log still verifiable", "chronicle secrets redact s1a2b3c4d5e6", under="secrets",
                  epilog="A value is replaced by [redacted:RULE] wherever the log holds it; the MANIFEST records "
                         "who, when and which findings; event hashes, checkpoints and `chronicle verify` stay "
                         "true. Tables, the search index and docs are rebuilt from the redacted log.")
    p.add_argument("finding_ids", metavar="ID", nargs="*", help="findings to redact (chronicle secrets list)")
    p.add_argument("--all", action="store_true", help="every finding not allowed")


def cmd_scan(ws: Workspace, args: argparse.Namespace) -> int:
    from chronicle.secrets.scan import scan

    s = scan(ws.open_log(), ws.data, full=args.full)
    if args.json:
        print_json(vars(s))
    elif s.upto_seq == s.start_seq or (s.events_scanned == 0 and not s.full):
        out(f"nothing new to scan (scanned up to seq {s.upto_seq:,}, rules {s.rules_version})")
    else:
        out(f"scanned seqs {s.start_seq + 1:,}..{s.upto_seq:,}{' (every event: ' + ('--full' if args.full else 'new rules') + ')' if s.full else ''}: "
            f"{s.findings} findings (rules {s.rules_version}); `chronicle secrets list` shows them")
    return EXIT_OK


def findings(ws: Workspace, *, hashes: bool = False):
    """Every finding, with where it is, whether it was allowed and whether a redaction took its
    value out (``value_hash`` too with ``hashes``; never shown)."""
    import polars as pl

    snap = ws.open_log().snapshot()
    present = set(snap.types())
    if "secret.found" not in present:
        return None
    found = snap.frame("secret.found", ["seq", "finding_id", "target_seq", "target_type", "target_stream", "field",
                                        "start", "end", "rule", "value_hash"]).collect()
    allowed = (snap.frame("secret.allowed", ["finding_id", "reason"]).collect() if "secret.allowed" in present
               else pl.DataFrame(schema={"finding_id": pl.String, "reason": pl.String}))
    lines = [snap.frame(t, ["seq", "line_no"]).filter(pl.col("seq").is_in(found["target_seq"].implode())).collect()
             for t in ("session.line", "codex.line") if t in present]
    line_no = pl.concat(lines) if lines else pl.DataFrame(schema={"seq": pl.Int64, "line_no": pl.Int64})
    redacted = {f for r in snap.redactions for f in r.findings}
    table = (found.unique("finding_id", keep="first")
             .join(line_no.rename({"seq": "target_seq"}), on="target_seq", how="left")
             .join(allowed.unique("finding_id", keep="last"), on="finding_id", how="left")
             .with_columns(pl.col("finding_id").alias("id"), pl.col("reason").is_not_null().alias("allowed"),
                           pl.col("finding_id").is_in(list(redacted)).alias("redacted"),
                           pl.col("target_stream").str.strip_prefix("source:").alias("where"))
             .sort("target_seq", "start"))
    return table.select("id", "rule", "target_type", "target_seq", "where", "line_no", "field", "start", "end",
                        "allowed", "reason", "redacted", *(["value_hash"] if hashes else []))


def cmd_list(ws: Workspace, args: argparse.Namespace) -> int:
    import polars as pl

    from chronicle.secrets.scan import scan

    scan(ws.open_log(), ws.data)
    table = findings(ws)
    if table is not None and not args.all:
        table = table.filter(~pl.col("allowed") & ~pl.col("redacted"))
    if table is None or table.height == 0:
        if not args.json:
            out("no findings" + ("" if args.all else " (not allowed or redacted)"))
        return EXIT_OK
    if args.json:
        for row in table.iter_rows(named=True):
            print_json(row)
        return EXIT_OK
    with pl.Config(tbl_rows=-1, tbl_hide_dataframe_shape=True, tbl_hide_column_data_types=True, fmt_str_lengths=60):
        out(str(table.drop("reason") if not args.all else table))
    out(f"{table.height} findings; values are never shown (`chronicle secrets allow ID` marks a false positive, "
        "`chronicle secrets redact ID` takes a value out of the log)")
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


def cmd_redact(ws: Workspace, args: argparse.Namespace) -> int:
    import polars as pl

    from chronicle.secrets.redact import redact
    from chronicle.secrets.scan import salt, scan

    if bool(args.finding_ids) == bool(args.all):
        raise UsageError("name the findings to redact (chronicle secrets list), or give --all")
    log = ws.open_log()
    scan(log, ws.data)  # what was recorded since the last scan is found first
    table = findings(ws, hashes=True)
    if table is None:
        table = pl.DataFrame(schema={"id": pl.String, "allowed": pl.Boolean, "redacted": pl.Boolean,
                                     "value_hash": pl.String, "rule": pl.String})
    allowed_values = set(table.filter(pl.col("allowed"))["value_hash"].to_list())
    if args.all:
        chosen = table.filter(~pl.col("allowed") & ~pl.col("value_hash").is_in(list(allowed_values)))
    else:
        known = set(table["id"].to_list())
        unknown = [f for f in args.finding_ids if f not in known]
        if unknown:
            raise UsageError(f"no finding {unknown[0]!r}" + (f" (nor {', '.join(map(repr, unknown[1:]))})" if unknown[1:] else "")
                             + "; `chronicle secrets list --all` lists them; nothing was changed")
        chosen = table.filter(pl.col("id").is_in(args.finding_ids))
        refused = chosen.filter(pl.col("allowed") | pl.col("value_hash").is_in(list(allowed_values)))
        if refused.height:
            raise UsageError(f"finding {refused['id'][0]!r} is allowed (marked not a secret), or its value is: "
                             "a redaction takes out secrets only; nothing was changed")
        # the value goes wherever it is: every finding of it is redacted with it
        chosen = table.filter(pl.col("value_hash").is_in(chosen["value_hash"].implode()))
    todo = chosen.filter(~pl.col("redacted"))
    if todo.height == 0:
        # a redaction killed before it rebuilt what was built from the log is finished here
        rebuilt = _rebuild_after(ws)
        if args.json:
            print_json({"redaction": None, "findings": [], "gone_already": [], "events": 0, "files": 0,
                        "by": None, "at": None, "rebuilt": rebuilt})
            return EXIT_OK
        out("nothing to redact: " + ("no findings" if chosen.height == 0 else "every value named was redacted already")
            + (f"; rebuilt what an earlier redaction left: {', '.join(rebuilt)}" if rebuilt else ""))
        return EXIT_OK
    plan, done = redact(log, salt(ws.data), todo.rename({"id": "finding_id"}))
    rebuilt = _rebuild_after(ws)
    result = {"redaction": done.n if done else None, "findings": sorted(plan.values), "gone_already": plan.gone,
              "events": len(done.rows) if done else 0, "files": len(done.files) if done else 0,
              "by": done.by if done else None, "at": done.at if done else None, "rebuilt": rebuilt}
    if args.json:
        print_json(result)
        return EXIT_OK
    if done is None:
        out("nothing to redact: the values are no longer in the log")
        return EXIT_OK
    out(f"redacted {len(plan.values)} finding(s)' values from {len(done.rows)} event(s) in {len(done.files)} "
        f"segment file(s) (MANIFEST line {done.n}, by {done.by}); each reads [redacted:RULE] now")
    out("event hashes and checkpoints are unchanged: `chronicle verify` passes; rebuilt: " + (", ".join(rebuilt) or "nothing"))
    return EXIT_OK


def _rebuild_after(ws: Workspace) -> list[str]:
    """What was built from the log before a redaction, built again from it now: the tables and the
    search index, where they exist and predate the last redaction (each also catches up by itself
    on its next read, but a table no one reads would keep the value till then). The documents need
    not be: they are written masked, so they never held a value a rule finds."""
    from chronicle import search
    from chronicle.projection import Engine
    from chronicle.store.head import redactions

    snap = ws.open_log().snapshot()
    count = len(snap.redactions)
    engine = Engine.of(ws)
    checkpoints = engine.checkpoints()
    stale = sorted(n for n, cp in checkpoints.items() if n in engine.projections and cp.get("redactions", 0) != count)
    done = []
    if stale:
        engine.run(snap, stale)
        done.append("tables")
    if (ws.tables_dir / search.INDEX_NAME).exists() and not search.current(ws.tables_dir, snap.head, redactions(ws.log_dir)):
        search.catch_up(ws.tables_dir, snap)
        done.append("search index")
    return done
