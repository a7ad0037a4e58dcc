"""``parse.result``: what a named, versioned parser made of a response."""

from __future__ import annotations

import polars as pl

from .envelope import Event
from .llm import sha256_column


class ParseResultV1(Event, frozen=True, tag="parse.result"):
    doc_id: str
    parser: str
    parser_version: int
    status: str
    parsed: str | None = None
    score: float | None = None
    scale: float | None = None
    reason: str | None = None


class ParseResult(Event, frozen=True, tag="parse.result"):
    """v2 added ``parsed_sha256`` and ``provenance`` (who recorded it: ``run:<id>`` or ``audit:reparse``)."""

    VERSION = 2

    doc_id: str
    parser: str
    parser_version: int
    status: str
    parsed: str | None = None
    score: float | None = None
    scale: float | None = None
    reason: str | None = None
    parsed_sha256: str | None = None
    provenance: str | None = None


def upcast_parse_v1_to_v2(frame: pl.LazyFrame) -> pl.LazyFrame:
    return frame.with_columns(sha256_column("parsed").alias("parsed_sha256"),
                              pl.lit(None, dtype=pl.String).alias("provenance"))
