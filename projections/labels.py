"""labels: what people said of episodes, actions and session-commit links.

A label is an ``annotation`` whose target names what it labels:
``episode:ID`` (key ``reaction``), ``action:TOOL_USE_ID`` (key ``action``) or
``link:SESSION@SHA`` (key ``link``, ``yes`` or ``no``); see
``chronicle.training.labels``, which writes them. A later label of the same
target and key supersedes an earlier one: the table keeps the latest (by seq)
and counts how many were given. Other annotations are not labels.
"""

from __future__ import annotations

import polars as pl

INPUTS = ["annotation"]
OUTPUTS = ["labels"]

KINDS = ("episode", "action", "link")
_KEYS = ["kind", "target_id", "key"]
VIEW = {"labels": ["kind", "target_id", "key", "value", "author", "labeled_at", "labels_given"]}
_COLUMNS = [*_KEYS, "value", "taxonomy", "author", "note", "labeled_at", "seq", "labels_given"]


def _rows(annotations: pl.LazyFrame) -> pl.LazyFrame:
    kind = pl.col("target").str.split_exact(":", 1).struct.field("field_0")
    return (annotations.filter(kind.is_in(KINDS))
            .select(kind.alias("kind"), pl.col("target").str.splitn(":", 2).struct.field("field_1").alias("target_id"),
                    "key", "value", "taxonomy", "author", "note", pl.col("recorded_at").alias("labeled_at"), "seq",
                    pl.lit(1, pl.Int64).alias("labels_given")))


def _latest(rows: pl.LazyFrame) -> pl.DataFrame:
    return (rows.sort("seq").group_by(_KEYS)
            .agg(*[pl.col(c).last() for c in _COLUMNS if c not in _KEYS and c != "labels_given"],
                 pl.col("labels_given").sum())
            .select(_COLUMNS).sort(_KEYS).collect())


def build(inputs: dict[str, pl.LazyFrame]) -> dict[str, pl.DataFrame]:
    return {"labels": _latest(_rows(inputs["annotation"]))}


def update(previous: dict[str, pl.DataFrame], delta: dict[str, pl.LazyFrame]) -> dict[str, pl.DataFrame]:
    """The latest label stays the latest unless a new one comes; counts add up."""
    return {"labels": _latest(pl.concat([previous["labels"].lazy(), _rows(delta["annotation"])]))}
