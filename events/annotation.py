"""``annotation``: a generic fact people and scripts attach to any stream.

Version 1 had no ``note``; version 2 added it; version 3 added ``taxonomy``,
the versioned taxonomy a label was given in (``reaction.v1``), null for a free
annotation. Old events stay as they were written and are upcast on read.

A **label** is an annotation on a target of the form ``episode:ID``,
``action:TOOL_USE_ID`` or ``link:SESSION@SHA`` (see ``chronicle.training``).
"""

from __future__ import annotations

import polars as pl

from .envelope import Event


class AnnotationV1(Event, frozen=True, tag="annotation"):
    target: str
    key: str
    value: str
    author: str


class AnnotationV2(Event, frozen=True, tag="annotation"):
    target: str
    key: str
    value: str
    author: str
    note: str | None = None

    VERSION = 2


class Annotation(Event, frozen=True, tag="annotation"):
    target: str
    key: str
    value: str
    author: str
    note: str | None = None
    taxonomy: str | None = None

    VERSION = 3


def upcast_v1_to_v2(frame: pl.LazyFrame) -> pl.LazyFrame:
    return frame.with_columns(pl.lit(None, dtype=pl.String).alias("note"))


def upcast_v2_to_v3(frame: pl.LazyFrame) -> pl.LazyFrame:
    return frame.with_columns(pl.lit(None, dtype=pl.String).alias("taxonomy"))
