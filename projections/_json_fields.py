"""JSON held in text fields (``*_json``), read defensively.

The log refuses text that is not JSON, but an event recorded by an older
chronicle, or JSON of the wrong shape, must not stop every rebuild: a value
that does not read is left out of the tables built from it and named in
``ingest_errors``.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import polars as pl


def _is_member_list(value: object) -> bool:
    return isinstance(value, list) and all(
        isinstance(m, dict) and isinstance(m.get("logical_key_id"), str) and isinstance(m.get("stage"), str)
        for m in value)


def _is_file_list(value: object) -> bool:
    return isinstance(value, list) and all(
        isinstance(f, dict) and isinstance(f.get("path"), str)
        and all(f.get(k) is None or (isinstance(f[k], int) and not isinstance(f[k], bool)) for k in ("added", "removed"))
        for f in value)


#: (event type, field) -> what a readable value is, in words, and the check.
SHAPES: dict[tuple[str, str], tuple[str, Callable[[object], bool]]] = {
    ("cohort.defined", "membership_json"): ("a list of members", _is_member_list),
    ("git.commit", "files_json"): ("a list of files with path, added, removed", _is_file_list),
}


def problem(type_name: str, field: str, text: str | None) -> str | None:
    """Why ``text`` cannot be read as that field's JSON, or None when it can."""
    if text is None:
        return None
    words, check = SHAPES[(type_name, field)]
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return f"{field} is not valid JSON"
    return None if check(value) else f"{field} is not {words}"


def readable(type_name: str, field: str) -> pl.Expr:
    """True where the field's JSON reads as its shape."""
    return pl.col(field).map_elements(lambda t: problem(type_name, field, t) is None, return_dtype=pl.Boolean,
                                      skip_nulls=False)


def problems(frame: pl.LazyFrame, type_name: str, field: str) -> pl.LazyFrame:
    """The events whose field does not read, with ``error`` saying why."""
    return (frame.with_columns(pl.col(field).map_elements(lambda t: problem(type_name, field, t),
                                                          return_dtype=pl.String, skip_nulls=False).alias("error"))
            .filter(pl.col("error").is_not_null()))
