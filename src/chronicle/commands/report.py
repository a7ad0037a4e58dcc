"""`chronicle report daily|weekly|monthly|session`: token usage and cost, as ccusage reports it.

One command, one process: new transcript bytes are ingested first (unless
``--no-ingest``), the ``usage`` projection is brought up to date (only the new
calls are merged), and the report is summed from ``api_calls`` in the
requested time zone. On a workspace the daemon keeps current it only reads.
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import date, datetime, timezone

from chronicle.commands.verbs import Verbs
from chronicle.commands.output import print_json, terminal_width
from chronicle.errors import EXIT_OK, UsageError
from chronicle.workspace import Workspace

PERIODS = ("daily", "weekly", "monthly", "session", "blocks")
BLOCK = 5 * 3600  # seconds: Claude's usage windows, as ccusage cuts them
HELP = "token usage and cost by day, week, month, session or 5-hour block (reads new transcript bytes first)"
EXAMPLES = """\
examples:
  chronicle report daily                         # this machine's time zone
  chronicle report weekly --since 2026-11-01 --breakdown
  chronicle report monthly --timezone UTC --json
  chronicle report session --project myrepo --model opus --csv
  chronicle report blocks                        # 5-hour windows; the active one's burn rate
  chronicle report daily --no-ingest             # only what is recorded already
  chronicle report daily --agent codex           # Codex CLI sessions only (as `ccusage codex daily`)
  chronicle report quality                       # link precision/recall and classifier accuracy vs labels
  chronicle report quality --bar 0.8 --json
"""
AGENTS = ("claude-code", "codex")  # the transcript sources' agents (ingest.sources; light to name here)
TOKENS = ["input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens", "total_tokens"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("period", choices=[*PERIODS, "quality"],
                   help="how to group the calls; `quality`: the classifiers measured against the labels")
    p.add_argument("--since", metavar="DATE", help="from this day on (YYYY-MM-DD, in --timezone)")
    p.add_argument("--until", metavar="DATE", help="up to and including this day")
    p.add_argument("--timezone", metavar="TZ", help="an IANA zone such as Europe/Berlin (default: this machine's)")
    p.add_argument("--start-of-week", choices=["sunday", "monday"], default="sunday",
                   help="first day of a week for `weekly` (default sunday, as ccusage)")
    p.add_argument("--project", metavar="TEXT", help="only projects whose path contains TEXT")
    p.add_argument("--model", metavar="TEXT", help="only models whose name contains TEXT")
    p.add_argument("--agent", choices=AGENTS, help="only this coding agent's sessions (default: every agent's)")
    p.add_argument("--breakdown", action="store_true", help="a row per model within each period")
    p.add_argument("--no-ingest", action="store_true", help="do not read new transcript bytes first")
    p.add_argument("--bar", type=float, metavar="F", help="quality: the link precision a project must reach "
                                                          "(default: [quality] bar in chronicle.toml, 0.7)")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="JSON Lines, a row per line")
    fmt.add_argument("--csv", action="store_true", help="CSV")


def run(ws: Workspace, args: argparse.Namespace) -> int:
    if args.period == "quality":
        from chronicle.commands.training import cmd_quality

        return cmd_quality(ws, args)
    zone = args.timezone or machine_timezone()
    _check_zone(zone)
    since, until = _day(args.since, "--since"), _day(args.until, "--until")
    if not args.no_ingest:
        _ingest(ws)
    calls, prices = _current_calls(ws)
    report = summarise(calls, prices, args.period, zone, since=since, until=until, project=args.project, model=args.model,
                       agent=args.agent, breakdown=args.breakdown, start_of_week=args.start_of_week)
    if args.json:
        for row in report.iter_rows(named=True):
            print_json(row)
    elif args.csv:
        from chronicle.projection import csv_ready

        sys.stdout.write(csv_ready(report).write_csv())
    else:
        _print_table(report, args.period, zone)
    return EXIT_OK


def machine_timezone() -> str:
    """This machine's IANA zone: $TZ, else where /etc/localtime points, else UTC."""
    given = os.environ.get("TZ", "").lstrip(":")
    if given and "/" in given or given == "UTC":
        return given
    try:
        target = os.path.realpath("/etc/localtime")
    except OSError:
        return "UTC"
    return target.split("zoneinfo/", 1)[1] if "zoneinfo/" in target else "UTC"


def _check_zone(zone: str) -> None:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise UsageError(f"--timezone: unknown time zone {zone!r} (an IANA name such as Europe/Berlin or UTC)") from None


def _day(text: str | None, flag: str) -> date | None:
    if text is None:
        return None
    try:
        return date.fromisoformat(text.replace("/", "-")) if len(text) != 8 else datetime.strptime(text, "%Y%m%d").date()
    except ValueError:
        raise UsageError(f"{flag}: {text!r} is not a day (YYYY-MM-DD or YYYYMMDD)") from None


def _ingest(ws: Workspace) -> None:
    from chronicle.ingest.sessions import SessionIngester
    from chronicle.ingest.sources import default_roots

    from chronicle.secrets.scan import scan

    roots = [r for r in default_roots() if r.is_dir()]
    if roots:
        log = ws.open_log()
        SessionIngester(log, ws.data / "ingest.lock", secrets_dir=ws.data).run(roots)
        scan(log, ws.data)


def _current_calls(ws: Workspace):
    """``api_calls`` brought up to date, and the price table in force."""
    from chronicle.projection import Engine, read_tables
    from chronicle.projections.usage import prices_in_force

    snap = ws.open_log().snapshot()
    Engine.of(ws).run(snap, ["usage"])
    return read_tables(ws.tables_dir, ["api_calls"])[0]["api_calls"], prices_in_force(snap.frame("prices.imported"))


def summarise(calls, prices: dict, period: str, zone: str, *, since: date | None = None, until: date | None = None,
              project: str | None = None, model: str | None = None, agent: str | None = None,
              breakdown: bool = False,
              start_of_week: str = "sunday"):
    """The report: a row per period (and model, with ``breakdown``), oldest first."""
    import polars as pl

    from chronicle.projections.usage import priced_calls, usd

    local = pl.col("time").dt.convert_time_zone(zone)
    calls = calls.with_columns(local.dt.date().alias("local_day"))
    if since is not None:
        calls = calls.filter(pl.col("local_day") >= since)
    if until is not None:
        calls = calls.filter(pl.col("local_day") <= until)
    if project:
        calls = calls.filter(pl.col("project").fill_null("").str.contains(project, literal=True))
    if model:
        calls = calls.filter(pl.col("model").fill_null("").str.contains(model, literal=True))
    if agent:
        calls = calls.filter(pl.col("agent") == agent)
    calls = priced_calls(calls, prices)
    if period == "blocks":
        return _blocks(calls, zone, breakdown)
    if period == "daily":
        key = [pl.col("local_day").alias("date")]
    elif period == "weekly":
        shift = 1 if start_of_week == "sunday" else 0  # Polars' weeks start on Monday
        key = [(pl.col("local_day") + pl.duration(days=shift)).dt.truncate("1w").sub(pl.duration(days=shift))
               .alias("week")]
    elif period == "monthly":
        key = [pl.col("local_day").dt.strftime("%Y-%m").alias("month")]
    else:
        key = [pl.col("session_id"), pl.col("project").drop_nulls().first().alias("project")]
    group = key[:1] + ([pl.col("model")] if breakdown else [])
    aggregates = [
        pl.len().cast(pl.Int64).alias("calls"),
        *[pl.col(c).fill_null(0).sum() for c in TOKENS],
        pl.when(pl.col("priced").any()).then(usd(pl.col("cost_pico").sum())).alias("cost_usd"),
        (~pl.col("priced")).sum().cast(pl.Int64).alias("unpriced_calls"),
    ]
    if not breakdown:
        aggregates.insert(0, pl.col("model").drop_nulls().unique().sort().alias("models"))
    if period == "session":
        aggregates = [key[1], local.min().alias("first"), local.max().alias("last"), *aggregates]
    out = calls.group_by(group).agg(aggregates)
    order = ["first", "session_id"] if period == "session" else [group[0].meta.output_name()]
    return out.sort(order + (["model"] if breakdown else []), nulls_last=True)


def _blocks(calls, zone: str, breakdown: bool, now: datetime | None = None):
    """5-hour blocks as ccusage cuts them: a block starts at the hour of its first call
    and ends 5 hours later; a call 5 hours or more after the block's start or the
    previous call starts the next one; the time between blocks is a gap row. The
    active block (its end not reached, its last call under 5 hours ago) has a burn
    rate (tokens a minute so far) and a projection to its end."""
    import polars as pl

    from chronicle.projections.usage import usd

    calls = calls.sort("time")
    starts, last_seen, index = [], None, []
    for t in calls["time"].dt.epoch("s").to_list():
        if not starts or t - starts[-1] >= BLOCK or t - last_seen >= BLOCK:
            starts.append(t - t % 3600)
        index.append(len(starts) - 1)
        last_seen = t
    calls = calls.with_columns(pl.Series("block", index, dtype=pl.Int64))
    group = ["block", "model"] if breakdown else ["block"]
    rows = calls.group_by(group).agg(
        pl.col("time").min().alias("first"), pl.col("time").max().alias("last"),
        *([] if breakdown else [pl.col("model").drop_nulls().unique().sort().alias("models")]),
        pl.len().cast(pl.Int64).alias("calls"), *[pl.col(c).fill_null(0).sum() for c in TOKENS],
        pl.when(pl.col("priced").any()).then(usd(pl.col("cost_pico").sum())).alias("cost_usd"),
        (~pl.col("priced")).sum().cast(pl.Int64).alias("unpriced_calls"),
    )
    begin = pl.from_epoch(pl.Series("start", starts, dtype=pl.Int64), time_unit="s").dt.replace_time_zone("UTC")
    rows = rows.join(pl.DataFrame({"block": range(len(starts)), "start": begin}), on="block").with_columns(
        (pl.col("start") + pl.duration(seconds=BLOCK)).alias("end"), pl.lit(False).alias("is_gap"))
    now_utc = (now or datetime.now().astimezone()).astimezone(timezone.utc)
    block_last = pl.col("last").max().over("block")
    active = (pl.col("end") > now_utc) & (pl.lit(now_utc) - block_last < pl.duration(seconds=BLOCK))
    minutes = ((pl.lit(now_utc) - pl.col("first").min().over("block")).dt.total_seconds() / 60).clip(lower_bound=1)
    rows = rows.with_columns(active.alias("is_active")).with_columns(
        pl.when("is_active").then(pl.col("total_tokens") / minutes).alias("burn_tokens_per_minute"),
        pl.when("is_active").then(pl.col("total_tokens") / minutes
                                  * ((pl.col("end") - pl.col("first").min().over("block")).dt.total_seconds() / 60))
        .round(0).alias("projected_total_tokens"))
    # the gaps: from 5 hours after a block's last call to the next block's first call
    spans = rows.group_by("block").agg(pl.col("first").min(), pl.col("last").max()).sort("block")
    gaps = spans.with_columns(pl.col("first").shift(-1).alias("next")).filter(
        pl.col("next").is_not_null() & (pl.col("next") - pl.col("last") >= pl.duration(seconds=BLOCK))).select(
        (pl.col("block") + 0.5).alias("order"), (pl.col("last") + pl.duration(seconds=BLOCK)).alias("start"),
        pl.col("next").alias("end"), pl.lit(True).alias("is_gap"), pl.lit(False).alias("is_active"),
        pl.lit(0, pl.Int64).alias("calls"), *[pl.lit(0, pl.Int64).alias(c) for c in TOKENS],
        pl.lit(0, pl.Int64).alias("unpriced_calls"))
    rows = pl.concat([rows.with_columns(pl.col("block").cast(pl.Float64).alias("order")), gaps], how="diagonal")
    local = [pl.col(c).dt.convert_time_zone(zone) for c in ("start", "end", "first", "last")]
    order = ["order", "model"] if breakdown else ["order"]
    columns = ["start", "end", "first", "last", "is_gap", "is_active", *(["model"] if breakdown else ["models"]),
               "calls", *TOKENS, "cost_usd", "unpriced_calls", "burn_tokens_per_minute", "projected_total_tokens"]
    return rows.with_columns(local).sort(order, nulls_last=True).select(columns)


def _print_table(report, period: str, zone: str) -> None:
    import polars as pl

    if not report.height:
        print(f"no API calls {('in this range' if period != 'session' else 'recorded')} ({zone})")
        return
    shown = report.with_columns(*[pl.col(c).map_elements(lambda n: f"{n:,}", return_dtype=pl.String)
                                  for c in TOKENS if c in report.columns])
    if "models" in shown.columns:
        shown = shown.with_columns(pl.col("models").list.join(", "))
    with pl.Config(tbl_rows=-1, tbl_cols=-1, tbl_hide_dataframe_shape=True, tbl_hide_column_data_types=True,
                   fmt_str_lengths=48, tbl_width_chars=terminal_width()):
        print(shown)
    cost = report["cost_usd"].sum()
    unpriced = report["unpriced_calls"].sum()
    print(f"total: {report['calls'].sum():,} calls, {report['total_tokens'].sum():,} tokens, ${cost:,.2f}"
          + (f" ({unpriced:,} calls of unpriced models not included)" if unpriced else "") + f"; times in {zone}")


def register(verbs: Verbs) -> None:
    add_arguments(verbs.add("report", run, HELP, "", json=False, epilog=EXAMPLES, served=True))
