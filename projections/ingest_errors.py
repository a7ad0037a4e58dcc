"""ingest_errors: every recorded ingest problem, with where it came from."""

from __future__ import annotations

import polars as pl

#: Event types that carry an ``error`` field and a source location.
INPUTS = ["session.line", "source.error"]
OUTPUTS = ["ingest_errors"]

COLUMNS = ["seq", "recorded_at", "type", "stream", "path", "line_no", "offset", "error"]


def _errors(inputs: dict[str, pl.LazyFrame]) -> pl.LazyFrame:
    parts = [inputs[t].filter(pl.col("error").is_not_null()).select(COLUMNS) for t in INPUTS]
    return pl.concat(parts, how="vertical_relaxed")


def build(inputs: dict[str, pl.LazyFrame]) -> dict[str, pl.DataFrame]:
    return {"ingest_errors": _errors(inputs).sort("seq").collect()}


def update(previous: dict[str, pl.DataFrame], delta: dict[str, pl.LazyFrame]) -> dict[str, pl.DataFrame]:
    new = _errors(delta).sort("seq").collect()
    if not new.height:
        return previous
    return {"ingest_errors": pl.concat([previous["ingest_errors"], new], how="vertical_relaxed")}
