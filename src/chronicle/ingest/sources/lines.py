"""Transcript bytes -> one event row per line, for any line-per-record source.

A source gives a ``Header``: the typed columns it reads from a line and a
function that decodes them from the line's bytes (msgspec, straight from a
view of the chunk, skipping everything else in the record). The ``raw``
column is built as Arrow buffers over the chunk itself, so a chunk is never
copied. A line that fails (not JSON, not an object, a field of an unexpected
type) is decoded again on its own to name the problem in its ``error``; it
keeps its bytes, and its header columns stay empty. A chunk that is not all
UTF-8 is checked line by line.
"""

from __future__ import annotations

import codecs
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec
import pyarrow as pa

from chronicle.events import Event
from chronicle.ingest import event_ids
from chronicle.store import codec

#: A line this long is still kept whole; the error notes its size.
HUGE_LINE = 50 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Header:
    """What a source reads from each line: ``row`` decodes a line's bytes (or a
    view of them) into values for ``columns``, in that order, raising
    ``msgspec.DecodeError`` (a ValidationError is one) when it cannot."""

    columns: tuple[str, ...]
    row: Callable[[Any], tuple]

    @property
    def empty(self) -> tuple:
        return (None,) * len(self.columns)


def _line_error(header: Header, line: bytes) -> tuple[tuple, str | None]:
    """Header columns and error for one line, decoded on its own."""
    body = line.rstrip(b"\r\n")
    if not body.strip():
        return header.empty, None  # a blank line is kept, and is not a problem
    note = f" (line of {len(line):,} bytes)" if len(line) >= HUGE_LINE else ""
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as exc:
        return header.empty, f"invalid UTF-8 at byte {exc.start}{note}"
    try:
        value = msgspec.json.decode(body)
    except msgspec.DecodeError as exc:
        return header.empty, f"invalid JSON: {exc}{note}"
    if not isinstance(value, dict):
        return header.empty, f"not a JSON object (a {type(value).__name__}){note}"
    try:
        return header.row(body), None
    except msgspec.ValidationError as exc:
        return header.empty, f"unexpected field type: {exc}{note}"


def _is_utf8(data: bytes, piece: int = 1 << 20) -> bool:
    """Whether ``data`` is UTF-8, holding at most one decoded piece at a time
    (decoding a whole chunk would allocate up to 4x it)."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    view = memoryview(data)
    try:
        for i in range(0, len(data), piece):
            decoder.decode(view[i : i + piece])
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return False
    return True


def line_spans(data: bytes) -> list[int]:
    """Offsets of the line starts in ``data``, and its length last: line i is
    ``data[spans[i]:spans[i + 1]]`` (the last one may lack its newline)."""
    spans = [0]
    find = data.find
    end = len(data)
    pos = find(b"\n") + 1
    while 0 < pos < end:
        spans.append(pos)
        pos = find(b"\n", pos) + 1
    if end:
        spans.append(end)
    return spans


def table(event: type[Event], header: Header, path: str, generation: int, offset: int, line_no: int,
          data: bytes) -> pa.Table:
    """``event`` rows for ``data``: whole lines starting at byte ``offset`` (line
    number ``line_no``) of the file; the last may lack a newline."""
    spans = line_spans(data)
    n = len(spans) - 1
    view = memoryview(data)
    errors: list[str | None] = [None] * n
    rows: list[tuple] = []
    add = rows.append
    if data.isascii() or _is_utf8(data):
        row = header.row
        for i in range(n):
            try:
                add(row(view[spans[i] : spans[i + 1]]))
            except msgspec.DecodeError:  # a ValidationError is one too
                values, errors[i] = _line_error(header, data[spans[i] : spans[i + 1]])
                add(values)
    else:  # some line is not UTF-8: find which, line by line
        for i in range(n):
            values, errors[i] = _line_error(header, data[spans[i] : spans[i + 1]])
            add(values)
    raw = pa.Array.from_buffers(pa.large_binary(), n, [None, pa.array(spans, pa.int64()).buffers()[1],
                                                       pa.py_buffer(data)])
    starts = [offset + o for o in spans[:-1]]
    key = event_ids.path_key(path)
    columns: dict[str, Any] = {
        "stream": [f"source:{path}"] * n,
        "event_id": [event_ids.line_id(key, generation, s) for s in starts],
        "path": [path] * n,
        "generation": [generation] * n,
        "line_no": list(range(line_no, line_no + n)),
        "offset": starts,
        "raw": raw,
    }
    by_column = list(zip(*rows)) if rows else [()] * len(header.columns)
    for name, values in zip(header.columns, by_column):
        columns[name] = list(values)
    columns["error"] = errors
    schema = codec.arrow_schema(event)
    return pa.table(list(columns.values()), schema=pa.schema([schema.field(c) for c in columns]))
