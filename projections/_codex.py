"""Codex CLI token accounting from ``codex.line``: one row per counted request.

The counting rule is the corpus NOTES' (``../shared/corpus/codex/NOTES.md``):
read each file in line order; ``model`` is the latest ``turn_context`` model;
a ``token_count`` event with ``info`` carries the file's running total, and a
total equal to the previous one is a repeat (Codex writes most snapshots
twice, and compaction writes one with unchanged totals), so it is skipped;
otherwise the request used the difference from the previous total (the whole
total the first time). A total that went down is counted by its
``last_token_usage``. ``token_usage_record`` lines repeat the same numbers and
are never counted. ``cached`` is part of ``input`` and ``reasoning`` part of
``output``, so a call's ``input_tokens`` here is input less cached, as Claude
Code's is, and ``total_tokens`` is input + output.

Only each file's latest generation counts (see ``_claude.latest_generation``).
"""

from __future__ import annotations

import polars as pl

from chronicle.projections._claude import latest_generation

_KINDS = ["input_tokens", "cached_input_tokens", "output_tokens", "reasoning_output_tokens", "tokens"]
#: kind -> (running total column, latest request column) of ``codex.line``
_COLUMNS = {k: (f"total_{k}", f"last_{k}") for k in _KINDS} | {"tokens": ("total_tokens", "last_total_tokens")}


def api_calls(lines: pl.LazyFrame) -> pl.LazyFrame:
    """``api_calls`` rows (the columns of ``_claude.api_calls``) of Codex sessions."""
    current = latest_generation(lines.select(
        "seq", "path", "generation", "line_no", "offset", "record_type", "payload_type", "timestamp", "session_id",
        "cwd", "model", *[c for pair in _COLUMNS.values() for c in pair]))
    meta = (current.filter(pl.col("record_type") == "session_meta")
            .group_by("path").agg(pl.col("session_id").sort_by("offset").first(),
                                  pl.col("cwd").sort_by("offset").first().alias("project")))
    model = pl.when(pl.col("record_type") == "turn_context").then(pl.col("model"))
    counts = (current.sort("path", "offset")
              .with_columns(model.forward_fill().over("path").alias("model"))
              .filter((pl.col("record_type") == "event_msg") & (pl.col("payload_type") == "token_count")
                      & pl.col("total_tokens").is_not_null()))
    total = {k: pl.col(t).fill_null(0) for k, (t, _) in _COLUMNS.items()}
    before = {k: total[k].shift(1).over("path") for k in _KINDS}
    repeat = pl.all_horizontal([total[k] == before[k] for k in _KINDS]).fill_null(False)
    went_down = pl.any_horizontal([total[k] < before[k] for k in _KINDS]).fill_null(False)
    used = {k: pl.when(before[k].is_null()).then(total[k])
            .when(went_down).then(pl.col(_COLUMNS[k][1]).fill_null(0))
            .otherwise(total[k] - before[k]) for k in _KINDS}
    return (counts.with_columns(repeat.alias("_repeat"), **{f"_{k}": v for k, v in used.items()})
            .filter(~pl.col("_repeat"))
            .drop("session_id", "cwd")
            .join(meta, on="path", how="left")
            .select(
                pl.lit(None, pl.String).alias("message_id"), pl.lit(None, pl.String).alias("request_id"),
                "model", "session_id", pl.lit(None, pl.String).alias("subagent_id"),
                pl.lit(None, pl.Boolean).alias("is_sidechain"), pl.lit(False).alias("embedded"),
                pl.col("timestamp").str.to_datetime(time_zone="UTC", strict=False).alias("time"), "project",
                (pl.col("_input_tokens") - pl.col("_cached_input_tokens")).cast(pl.Int64).alias("input_tokens"),
                pl.col("_output_tokens").cast(pl.Int64).alias("output_tokens"),
                pl.lit(0, pl.Int64).alias("cache_creation_input_tokens"),
                pl.col("_cached_input_tokens").cast(pl.Int64).alias("cache_read_input_tokens"),
                pl.lit(None, pl.Int64).alias("cache_creation_5m_tokens"),
                pl.lit(None, pl.Int64).alias("cache_creation_1h_tokens"),
                pl.col("_tokens").cast(pl.Int64).alias("total_tokens"), "path", "line_no", "seq",
                pl.lit("codex").alias("agent"),
                pl.col("_reasoning_output_tokens").cast(pl.Int64).alias("reasoning_output_tokens"),
            ))
