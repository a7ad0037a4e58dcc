"""api_calls and usage_daily: Claude Code token accounting and cost.

``api_calls`` has one row per API call, deduplicated by the rule in the corpus
NOTES (see ``_claude.api_calls``). ``usage_daily`` sums it by UTC day x model x
project and prices it from ``claude_prices.json``, a dated table shipped with
the code, or from the latest table imported with ``chronicle prices import``
(a ``prices.imported`` event); its version is a column. A model is priced by
its exact id or a dated alias of one (``claude-sonnet-4-20250514`` by
``claude-sonnet-4``), never by a prefix across versions (``claude-opus-4-7``
is not ``claude-opus-4``). A model the table does not know is ``priced =
false`` with a null cost, never $0.
"""

from __future__ import annotations

import json
import re
from datetime import date
from pathlib import Path

import polars as pl

from chronicle.projection import NeedsRebuild
from chronicle.projections._claude import TOKEN_COLUMNS, api_calls, best_copies, in_call_order, rewritten

INPUTS = ["session.line", "prices.imported"]
OUTPUTS = ["api_calls", "usage_daily", "usage_by_session"]

SHIPPED = json.loads((Path(__file__).with_name("claude_prices.json")).read_text())
_RATES = ["input", "output", "cache_write_5m", "cache_write_1h", "cache_read"]
_DATED = re.compile(r"-\d{8}$")


def prices_in_force(imported: pl.LazyFrame) -> dict:
    """The latest imported table, else the shipped one."""
    last = imported.sort("seq").select("table_json").tail(1).collect()
    return json.loads(last["table_json"][0]) if last.height else SHIPPED


def price_table(prices: dict) -> pl.DataFrame:
    """One row per (model key, effective date) with per-token rates."""
    rows = [{"key": key, "from": date.fromisoformat(e["from"]), **{r: e[r] / 1e6 for r in _RATES}}
            for key, entries in prices["models"].items() for e in entries]
    schema = {"key": pl.String, "from": pl.Date, **{r: pl.Float64 for r in _RATES}}
    return pl.DataFrame(rows, schema=schema).sort("key", "from")


def price_key(model: str, keys: set[str]) -> str | None:
    """The table's entry for ``model``: its own id, or the id it is a dated alias of."""
    if model in keys:
        return model
    undated = _DATED.sub("", model)
    return undated if undated != model and undated in keys else None


def _priced(daily: pl.DataFrame, prices: dict, digits: int | None = 6) -> pl.DataFrame:
    """Attach the price in effect on each row's day for its model (see price_key)
    (the cost rounded to ``digits``; None keeps it whole, for rows that are summed later)."""
    table = price_table(prices)
    known = set(table["key"].unique())
    models = daily.select("model").unique().drop_nulls()["model"].to_list()
    keys = {m: price_key(m, known) for m in models}
    daily = daily.with_columns(pl.col("model").replace_strict(keys, default=None, return_dtype=pl.String).alias("key"))
    joined = daily.sort("day").join_asof(table, left_on="day", right_on="from", by="key",
                                         strategy="backward", check_sortedness=False)  # sorted within each key
    cache_5m = pl.col("cache_creation_5m_tokens")
    cache_1h = pl.col("cache_creation_1h_tokens")
    unsplit = pl.col("cache_creation_input_tokens") - cache_5m - cache_1h
    cost = (pl.col("input_tokens") * pl.col("input") + pl.col("output_tokens") * pl.col("output")
            + (cache_5m + unsplit) * pl.col("cache_write_5m") + cache_1h * pl.col("cache_write_1h")
            + pl.col("cache_read_input_tokens") * pl.col("cache_read"))
    return joined.with_columns(
        pl.col("input").is_not_null().alias("priced"),
        (cost if digits is None else cost.round(digits)).alias("cost_usd"),
        pl.lit(prices["version"]).alias("price_table"),
    ).drop("key", "from", *_RATES)


def priced_calls(calls: pl.DataFrame, prices: dict) -> pl.DataFrame:
    """``api_calls`` rows with ``priced``, ``cost_usd`` and ``price_table``, each priced as
    ``usage_daily`` prices it (the rates in effect on its UTC day)."""
    tokens = [*TOKEN_COLUMNS, "cache_creation_5m_tokens", "cache_creation_1h_tokens"]
    return _priced(calls.with_columns(pl.col("time").dt.date().alias("day"), *[pl.col(c).fill_null(0) for c in tokens]),
                   prices, digits=None).drop("day")


def build(inputs: dict[str, pl.LazyFrame]) -> dict[str, pl.DataFrame]:
    return _tables(api_calls(inputs["session.line"]).collect(), prices_in_force(inputs["prices.imported"]))


def update(previous: dict[str, pl.DataFrame], delta: dict[str, pl.LazyFrame],
           inputs: dict[str, pl.LazyFrame]) -> dict[str, pl.DataFrame]:
    """Merge the new lines' calls into ``api_calls``, then re-sum the small tables.

    ``api_calls`` holds each call's best copy (``best_copies``), and the best of the
    old best and the new copies is the best of all copies: only the calls the new
    lines name are ranked again.
    A rewritten file (a new generation starts at offset 0) withdraws its earlier
    lines, and with them copies that lost to them and are no longer kept: that
    needs every line, so it is a full build."""
    lines = delta["session.line"]
    if rewritten(lines):
        raise NeedsRebuild("a transcript was rewritten")
    prices = prices_in_force(inputs["prices.imported"])
    new = api_calls(lines).collect()
    if not new.height:
        if delta["prices.imported"].head(1).collect().height:
            return _tables(previous["api_calls"], prices)  # the same calls, priced again
        return previous
    old, key = previous["api_calls"], ["message_id", "request_id"]
    named = new.select(key).unique()
    again = best_copies(pl.concat([old.join(named, on=key, how="semi", nulls_equal=True), new]))
    return _tables(in_call_order(pl.concat([old.join(named, on=key, how="anti", nulls_equal=True), again])), prices)


def _tables(calls: pl.DataFrame, prices: dict) -> dict[str, pl.DataFrame]:
    daily = (
        calls.with_columns(pl.col("time").dt.date().alias("day"))
        .group_by("day", "model", "project")
        .agg(
            pl.len().cast(pl.Int64).alias("calls"),
            *[pl.col(c).sum() for c in TOKEN_COLUMNS],
            pl.col("cache_creation_5m_tokens").fill_null(0).sum(),
            pl.col("cache_creation_1h_tokens").fill_null(0).sum(),
            pl.col("total_tokens").sum(),
        )
    )
    daily = _priced(daily, prices).sort("day", "model", "project", nulls_last=True)
    # per session: priced by day and model like usage_daily, then summed; unpriced calls are counted, not zeroed
    per_session = _priced(
        calls.with_columns(pl.col("time").dt.date().alias("day"))
        .group_by("session_id", "day", "model")
        .agg(pl.len().cast(pl.Int64).alias("calls"), *[pl.col(c).fill_null(0).sum() for c in TOKEN_COLUMNS],
             pl.col("cache_creation_5m_tokens").fill_null(0).sum(), pl.col("cache_creation_1h_tokens").fill_null(0).sum(),
             pl.col("total_tokens").sum()), prices).sort("session_id", "day", "model", nulls_last=True)
    # sorted first: the float sum of a session's costs then adds in one order, build or update
    by_session = (per_session.group_by("session_id")
                  .agg(pl.col("calls").sum(), pl.col("total_tokens").sum(), pl.col("input_tokens").sum(),
                       pl.col("output_tokens").sum(),
                       pl.when(pl.col("priced").any()).then(pl.col("cost_usd").sum()).alias("cost_usd"),
                       pl.col("calls").filter(~pl.col("priced")).sum().alias("unpriced_calls"))
                  .sort("session_id"))
    return {"api_calls": calls, "usage_daily": daily, "usage_by_session": by_session}
