"""events_by_type: how many events (and canonical bytes) of each type per UTC day."""

from __future__ import annotations

import polars as pl

INPUTS = ["*"]
OUTPUTS = ["events_by_type"]

_KEYS = ["day", "type"]


def _aggregate(frame: pl.LazyFrame) -> pl.LazyFrame:
    return (
        frame.group_by(pl.col("recorded_at").dt.date().alias("day"), "type")
        .agg(
            pl.len().cast(pl.Int64).alias("events"),
            pl.col("size").sum().cast(pl.Int64).alias("bytes"),
            pl.col("seq").min().alias("first_seq"),
            pl.col("seq").max().alias("last_seq"),
        )
    )


def build(inputs: dict[str, pl.LazyFrame]) -> dict[str, pl.DataFrame]:
    return {"events_by_type": _aggregate(inputs["*"]).sort(_KEYS).collect()}


def update(previous: dict[str, pl.DataFrame], delta: dict[str, pl.LazyFrame]) -> dict[str, pl.DataFrame]:
    """Counts are additive: merge the new events' aggregate into the old table."""
    merged = (
        pl.concat([previous["events_by_type"].lazy(), _aggregate(delta["*"])])
        .group_by(_KEYS)
        .agg(
            pl.col("events").sum(),
            pl.col("bytes").sum(),
            pl.col("first_seq").min(),
            pl.col("last_seq").max(),
        )
    )
    return {"events_by_type": merged.sort(_KEYS).collect()}
