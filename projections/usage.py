"""api_calls and usage_daily: coding-agent token accounting and cost.

``api_calls`` has one row per API call, its ``agent`` a column: Claude Code's
deduplicated by the rule in the corpus NOTES (see ``_claude.api_calls``),
Codex CLI's counted by the rule in its NOTES (see ``_codex.api_calls``). ``usage_daily`` sums it by UTC day x model x
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
from chronicle.projections import _codex
from chronicle.projections._claude import TOKEN_COLUMNS, api_calls, best_copies, in_call_order, rewritten

INPUTS = ["session.line", "codex.line", "prices.imported"]
OUTPUTS = ["api_calls", "usage_daily", "usage_by_session"]

SHIPPED = json.loads((Path(__file__).with_name("claude_prices.json")).read_text())
_RATES = ["input", "output", "cache_write_5m", "cache_write_1h", "cache_read"]
_DATED = re.compile(r"-\d{8}$")


def prices_in_force(imported: pl.LazyFrame) -> dict:
    """The latest imported table, else the shipped one."""
    last = imported.sort("seq").select("table_json").tail(1).collect()
    return json.loads(last["table_json"][0]) if last.height else SHIPPED


def price_table(prices: dict) -> pl.DataFrame:
    """One row per (model key, effective date) with integer rates in pico-USD a token
    (USD per million tokens x 10^6: exact for any rate of six decimals), and the
    rates above 200,000 tokens of a kind in one call where the model has them."""
    rows = [{"key": key, "from": date.fromisoformat(e["from"]),
             **{r: round(e[r] * 1e6) for r in _RATES},
             **{f"{r}_above": round(e.get(f"{r}_above_200k", e[r]) * 1e6) for r in _RATES}}
            for key, entries in prices["models"].items() for e in entries]
    schema = {"key": pl.String, "from": pl.Date, **{r: pl.Int64 for r in _RATES},
              **{f"{r}_above": pl.Int64 for r in _RATES}}
    return pl.DataFrame(rows, schema=schema).sort("key", "from")


def price_key(model: str, keys: set[str]) -> str | None:
    """The table's entry for ``model``: its own id, or the id it is a dated alias of."""
    if model in keys:
        return model
    undated = _DATED.sub("", model)
    return undated if undated != model and undated in keys else None


TIER = 200_000  # tokens of one kind in one call above which a long-context rate applies (as ccusage prices it)


def priced_calls(calls: pl.DataFrame, prices: dict) -> pl.DataFrame:
    """``api_calls`` rows with ``priced``, ``cost_pico`` (pico-USD, exact) and ``price_table``:
    each call priced at the rates in effect on its UTC day for its model (see price_key);
    each kind of token above 200,000 in the call at the model's higher rate, where it has one."""
    table = price_table(prices)
    known = set(table["key"].unique())
    keys = {m: price_key(m, known) for m in calls.select("model").unique().drop_nulls()["model"].to_list()}
    calls = calls.with_columns(pl.col("time").dt.date().alias("_day"),
                               pl.col("model").replace_strict(keys, default=None, return_dtype=pl.String).alias("_key"),
                               pl.int_range(pl.len()).alias("_row"))
    joined = calls.sort("_day").join_asof(table.rename({"key": "_key"}), left_on="_day", right_on="from", by="_key",
                                          strategy="backward", check_sortedness=False).sort("_row")
    t = {c: pl.col(c).fill_null(0) for c in ["input_tokens", "output_tokens", "cache_creation_input_tokens",
                                             "cache_read_input_tokens", "cache_creation_5m_tokens",
                                             "cache_creation_1h_tokens"]}
    unsplit = t["cache_creation_input_tokens"] - t["cache_creation_5m_tokens"] - t["cache_creation_1h_tokens"]
    kinds = [(t["input_tokens"], "input"), (t["output_tokens"], "output"),
             (t["cache_creation_5m_tokens"] + unsplit, "cache_write_5m"),
             (t["cache_creation_1h_tokens"], "cache_write_1h"), (t["cache_read_input_tokens"], "cache_read")]
    cost = pl.sum_horizontal([n.clip(upper_bound=TIER) * pl.col(r) + (n - TIER).clip(lower_bound=0) * pl.col(f"{r}_above")
                              for n, r in kinds])
    return joined.with_columns(
        pl.col("input").is_not_null().alias("priced"),
        pl.when(pl.col("input").is_not_null()).then(cost).cast(pl.Int64).alias("cost_pico"),
        pl.lit(prices["version"]).alias("price_table"),
    ).drop("_day", "_key", "_row", "from", *_RATES, *[f"{r}_above" for r in _RATES])


def usd(pico: pl.Expr) -> pl.Expr:
    """pico-USD summed exactly, as dollars to the millionth."""
    return (pico / 1e12).round(6)


def build(inputs: dict[str, pl.LazyFrame]) -> dict[str, pl.DataFrame]:
    calls = pl.concat([api_calls(inputs["session.line"]), _codex.api_calls(inputs["codex.line"])])
    return _tables(in_call_order(calls).collect(), prices_in_force(inputs["prices.imported"]))


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
    # A Codex call is counted against the file's previous total: the files the delta
    # touches are counted again from all their lines (a rewrite included).
    codex_paths = delta["codex.line"].select("path").unique().collect()["path"]
    if not new.height and not codex_paths.len():
        if delta["prices.imported"].head(1).collect().height:
            return _tables(previous["api_calls"], prices)  # the same calls, priced again
        return previous
    old, key = previous["api_calls"], ["message_id", "request_id"]
    kept = [old.filter(~pl.col("path").is_in(codex_paths.implode()) | (pl.col("agent") != "codex"))]
    if codex_paths.len():
        kept.append(_codex.api_calls(inputs["codex.line"].filter(pl.col("path").is_in(codex_paths.implode())))
                    .collect())
    if new.height:
        claude = old.filter(pl.col("agent") == "claude-code")
        named = new.select(key).unique()
        again = best_copies(pl.concat([claude.join(named, on=key, how="semi", nulls_equal=True), new]))
        kept = [kept[0].join(named, on=key, how="anti", nulls_equal=True), *kept[1:], again]
    return _tables(in_call_order(pl.concat(kept)), prices)


def _tables(calls: pl.DataFrame, prices: dict) -> dict[str, pl.DataFrame]:
    # every call priced on its own (a long-context rate applies per call), summed exactly in pico-USD;
    # a group's cost is null when none of its calls could be priced: unknown is not $0
    priced = priced_calls(calls, prices).with_columns(pl.col("time").dt.date().alias("day"))
    cost = pl.when(pl.col("priced").any()).then(usd(pl.col("cost_pico").sum())).alias("cost_usd")
    daily = (
        priced.group_by("day", "agent", "model", "project")
        .agg(
            pl.len().cast(pl.Int64).alias("calls"),
            *[pl.col(c).sum() for c in TOKEN_COLUMNS],
            pl.col("cache_creation_5m_tokens").fill_null(0).sum(),
            pl.col("cache_creation_1h_tokens").fill_null(0).sum(),
            pl.col("total_tokens").sum(),
            pl.col("priced").all(), cost, pl.col("price_table").first(),
        )
        .sort("day", "agent", "model", "project", nulls_last=True)
    )
    by_session = (priced.group_by("session_id")
                  .agg(pl.col("agent").first(), pl.len().cast(pl.Int64).alias("calls"), pl.col("total_tokens").sum(),
                       pl.col("input_tokens").fill_null(0).sum(), pl.col("output_tokens").fill_null(0).sum(), cost,
                       (~pl.col("priced")).sum().cast(pl.Int64).alias("unpriced_calls"))
                  .sort("session_id"))
    return {"api_calls": calls, "usage_daily": daily, "usage_by_session": by_session}
