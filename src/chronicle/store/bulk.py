"""Bulk loads: tables of events validated and content-hashed over Arrow columns.

``prepare_tables`` takes no lock and touches no file, so a pipeline runs it
on one thread while ``EventLog.append_prepared`` commits the previous batch on
another (hashing releases the GIL). No Event objects are built.
"""

from __future__ import annotations

from typing import NamedTuple

import pyarrow as pa

from chronicle.events import Event, event_class
from chronicle.store import codec
from chronicle.store.batch import new_event_id
from chronicle.store.errors import InvalidEvent


class PreparedPart(NamedTuple):
    """One event type's rows of a prepared bulk load."""

    cls: type[Event]
    schema: pa.Schema
    content: pa.Table
    sizes: list[int]
    hashes: list[bytes]
    ids_given: bool


class PreparedTables(NamedTuple):
    """Tables validated and content-hashed for :meth:`EventLog.append_prepared`."""

    parts: list[PreparedPart]


def prepare_tables(tables: dict[str, pa.Table]) -> PreparedTables:
    """Validate and hash tables for a bulk load. Takes no lock and touches no file,
    so it can run beside a commit (hashing releases the GIL)."""
    parts = []
    for type_name, table in tables.items():
        if table.num_rows == 0:
            continue
        cls = event_class(type_name)
        schema = codec.arrow_schema(cls)
        content = content_table(cls, schema, table)
        hashes, sizes = codec.content_hashes_from_table(content)
        parts.append(PreparedPart(cls, schema, content, sizes, hashes, "event_id" in table.column_names))
    return PreparedTables(parts)


def content_table(cls: type[Event], schema: pa.Schema, table: pa.Table) -> pa.Table:
    """``table`` checked against ``cls`` and completed to its content columns
    (envelope without seq, recorded_at, content_hash, size); InvalidEvent if not."""
    n = table.num_rows
    cols = set(table.column_names)
    missing = [f.name for f in schema if f.name not in codec.ENVELOPE_COLUMNS and not f.nullable and f.name not in cols]
    if "stream" not in cols:
        missing.insert(0, "stream")
    if missing:
        raise InvalidEvent(f"{cls.type_name()}: missing column(s) {', '.join(missing)}", field=missing[0])
    unknown = cols - set(schema.names)
    if unknown:
        raise InvalidEvent(f"{cls.type_name()}: unknown column(s) {', '.join(sorted(unknown))}", field=sorted(unknown)[0])
    arrays = {
        "event_id": table.column("event_id") if "event_id" in cols else pa.array([new_event_id() for _ in range(n)], pa.string()),
        "type": pa.array([cls.type_name()] * n, pa.string()),
        "v": pa.array([cls.VERSION] * n, pa.int32()),
        "stream": table.column("stream"),
    }
    for f in schema:
        if f.name in codec.ENVELOPE_COLUMNS:
            continue
        arrays[f.name] = table.column(f.name) if f.name in cols else pa.nulls(n, f.type)
    names = [f.name for f in schema if f.name not in ("seq", "recorded_at", "content_hash", "size")]
    target = pa.schema([schema.field(nm) for nm in names])
    try:
        out = pa.table([arrays[nm] for nm in names], names=names).cast(target)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
        raise InvalidEvent(f"{cls.type_name()}: {exc}") from None
    for f in target:
        if not f.nullable and out.column(f.name).null_count:
            raise InvalidEvent(f"{cls.type_name()}: column {f.name!r} has nulls", field=f.name)
    import pyarrow.compute as pc

    if pc.any(pc.equal(out.column("stream"), "")).as_py():
        raise InvalidEvent(f"{cls.type_name()}: column 'stream' has empty values", field="stream")
    for name in codec.json_fields(cls):
        for i, text in enumerate(out.column(name).to_pylist()):
            codec.check_json(cls, name, text, row=i)
    return out
