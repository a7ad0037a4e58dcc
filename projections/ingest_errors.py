"""ingest_errors: every recorded ingest problem, with where it came from, and
every event whose JSON field the tables could not read (see ``_json_fields``)."""

from __future__ import annotations

import polars as pl

from chronicle.projections._json_fields import SHAPES, problems

#: Event types that carry an ``error`` field and a source location.
LOCATED = ["session.line", "codex.line", "source.error"]
INPUTS = [*LOCATED, *sorted({t for t, _ in SHAPES})]
OUTPUTS = ["ingest_errors"]

COLUMNS = ["seq", "recorded_at", "type", "stream", "path", "line_no", "offset", "error"]


def _errors(inputs: dict[str, pl.LazyFrame]) -> pl.LazyFrame:
    parts = [inputs[t].filter(pl.col("error").is_not_null()).select(COLUMNS) for t in LOCATED]
    for t, field in SHAPES:
        bad = problems(inputs[t].select("seq", "recorded_at", "type", "stream", field), t, field)
        parts.append(bad.select("seq", "recorded_at", "type", "stream",
                                pl.lit(None, pl.String).alias("path"), pl.lit(None, pl.Int64).alias("line_no"),
                                pl.lit(None, pl.Int64).alias("offset"), "error"))
    return pl.concat(parts, how="vertical_relaxed")


def build(inputs: dict[str, pl.LazyFrame]) -> dict[str, pl.DataFrame]:
    return {"ingest_errors": _errors(inputs).sort("seq").collect()}


def update(previous: dict[str, pl.DataFrame], delta: dict[str, pl.LazyFrame]) -> dict[str, pl.DataFrame]:
    new = _errors(delta).sort("seq").collect()
    if not new.height:
        return previous
    return {"ingest_errors": pl.concat([previous["ingest_errors"], new], how="vertical_relaxed")}
