"""``annotation``: a generic fact people and scripts attach to any stream.

Version 1 had no ``note``; version 2 added it. v1 events stay as they were
written and are upcast on read (``note`` becomes null).
"""

from __future__ import annotations

import polars as pl

from .envelope import Event


class AnnotationV1(Event, frozen=True, tag="annotation"):
    target: str
    key: str
    value: str
    author: str


class Annotation(Event, frozen=True, tag="annotation"):
    target: str
    key: str
    value: str
    author: str
    note: str | None = None

    VERSION = 2


def upcast_v1_to_v2(frame: pl.LazyFrame) -> pl.LazyFrame:
    return frame.with_columns(pl.lit(None, dtype=pl.String).alias("note"))
