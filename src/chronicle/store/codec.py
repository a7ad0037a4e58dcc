"""How events become bytes and columns, and how they are hashed.

The *canonical encoding* of an event is msgpack with sorted keys of its
content: ``type``, ``v``, ``stream``, ``event_id`` and the type's fields (the
store-assigned ``seq`` and ``recorded_at`` are not content). The WAL stores
exactly these bytes; ``content_hash`` is their sha256, and the per-event hash
in the Merkle tree binds the content to its position:
``sha256(seq:8 BE || recorded_at_us:8 BE || content_hash)``.

A segment row keeps every content value as a typed column, so the canonical
encoding can be rebuilt from a row and checked (``chronicle verify``).
"""

from __future__ import annotations

import hashlib
import re
import types
import typing
from datetime import datetime, timezone
from functools import cache
from itertools import repeat
from typing import Annotated

import msgspec
import pyarrow as pa
from msgspec import inspect as mi

from chronicle.events import Event, event_class
from chronicle.store.errors import InvalidEvent

_CANONICAL = msgspec.msgpack.Encoder(order="sorted")
_PLAIN = msgspec.msgpack.Encoder()
_RAW_LIST = msgspec.msgpack.Decoder(list[msgspec.Raw])
_ENCODE_ROWS = 256
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)

#: Columns every segment file has, before the type's own fields.
ENVELOPE_SCHEMA = pa.schema(
    [
        pa.field("seq", pa.int64(), nullable=False),
        pa.field("event_id", pa.string(), nullable=False),
        pa.field("type", pa.string(), nullable=False),
        pa.field("v", pa.int32(), nullable=False),
        pa.field("stream", pa.string(), nullable=False),
        pa.field("recorded_at", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("content_hash", pa.binary(32), nullable=False),
        pa.field("size", pa.int64(), nullable=False),
    ]
)
ENVELOPE_COLUMNS = tuple(ENVELOPE_SCHEMA.names)


def _arrow_type(t: mi.Type, where: str) -> tuple[pa.DataType, bool]:
    if isinstance(t, mi.UnionType):
        inner = [x for x in t.types if not isinstance(x, mi.NoneType)]
        if len(inner) != 1 or len(inner) == len(t.types):
            raise TypeError(f"{where}: only `X | None` unions are storable")
        return _arrow_type(inner[0], where)[0], True
    if isinstance(t, mi.StrType):
        return pa.large_string(), False
    if isinstance(t, mi.BytesType):
        return pa.large_binary(), False
    if isinstance(t, mi.BoolType):
        return pa.bool_(), False
    if isinstance(t, mi.IntType):
        return pa.int64(), False
    if isinstance(t, mi.FloatType):
        return pa.float64(), False
    if isinstance(t, mi.DateTimeType):
        return pa.timestamp("us", tz="UTC"), False
    if isinstance(t, mi.ListType):
        return pa.list_(_arrow_type(t.item_type, where)[0]), False
    raise TypeError(f"{where}: field type {t!r} is not storable as a column")


@cache
def arrow_schema(cls: type[Event]) -> pa.Schema:
    """Envelope columns followed by the class's fields, typed."""
    info = mi.type_info(cls)
    payload = set(cls.payload_fields())
    fields = list(ENVELOPE_SCHEMA)
    for f in info.fields:
        if f.name in payload and f.name in ENVELOPE_COLUMNS:
            raise TypeError(f"{cls.__name__}.{f.name}: the name is taken by a store column")
        if f.name in payload:
            dtype, nullable = _arrow_type(f.type, f"{cls.__name__}.{f.name}")
            fields.append(pa.field(f.name, dtype, nullable=nullable))
    return pa.schema(fields)


#: Every integer column is int64: a larger value would be accepted by msgpack
#: and refused by Arrow at seal time, poisoning the log for every reader after.
Int64 = Annotated[int, msgspec.Meta(ge=-(1 << 63), le=(1 << 63) - 1)]


def _bounded(tp: object) -> object:
    """``tp`` with every ``int`` in it replaced by :data:`Int64`."""
    if tp is int:
        return Int64
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return typing.Union[tuple(_bounded(a) for a in typing.get_args(tp))]  # type: ignore[return-value]
    if origin is list:
        return list[_bounded(typing.get_args(tp)[0])]  # type: ignore[misc]
    return tp


@cache
def checked_class(cls: type[Event]) -> type[Event]:
    """A twin of ``cls`` that validation decodes into: same fields, tag and
    constraints, integers bounded to int64, and no garbage-collector
    bookkeeping (the result is only checked and dropped; about 7% faster)."""
    annotations: dict[str, object] = {}
    namespace: dict[str, object] = {"__annotations__": annotations}
    for f in msgspec.structs.fields(cls):
        bounded = _bounded(f.type)
        if bounded is f.type:
            continue
        annotations[f.name] = bounded
        if f.default is not msgspec.NODEFAULT:
            namespace[f.name] = f.default
        elif f.default_factory is not msgspec.NODEFAULT:
            namespace[f.name] = msgspec.field(default_factory=f.default_factory)
    return type(cls.__name__, (cls,), namespace, frozen=True, gc=False)


@cache
def json_fields(cls: type[Event]) -> tuple[str, ...]:
    """Fields that hold a JSON document as text (by the ``_json`` naming rule)."""
    return tuple(f for f in cls.payload_fields() if f.endswith("_json"))


def check_json(cls: type[Event], name: str, value: str | None, row: int | None = None) -> None:
    """InvalidEvent naming the field (and the row of a bulk load) when the ``*_json`` field
    ``name`` holds text that is not valid JSON: the one check of every write path."""
    if value is None:
        return
    try:
        msgspec.json.decode(value)
    except (msgspec.DecodeError, TypeError, RecursionError) as exc:
        where = "" if row is None else f"row {row}: "
        raise InvalidEvent(f"{cls.type_name()}: {where}field {name!r} is not valid JSON: {exc}",
                           index=row, field=name) from None


def check_json_fields(event: Event) -> None:
    """InvalidEvent naming the field when a ``*_json`` field is not valid JSON."""
    for name in json_fields(type(event)):
        check_json(type(event), name, getattr(event, name))


@cache
def _decoder(cls: type[Event]) -> msgspec.msgpack.Decoder:
    return msgspec.msgpack.Decoder(checked_class(cls))


def content_of(event: Event) -> dict:
    """The content dict of an event (what the canonical encoding covers)."""
    cls = type(event)
    content = msgspec.structs.asdict(event)
    del content["seq"], content["recorded_at"]
    content["type"] = cls.type_name()
    content["v"] = cls.VERSION
    return content


def canonical(content: dict) -> bytes:
    return _CANONICAL.encode(content)


def encode(event: Event) -> bytes:
    """Validate ``event`` against its class and return its canonical encoding.

    Struct constructors do not check types, so the encoding is decoded back
    through a typed decoder: anything that reaches the WAL is guaranteed to
    load into its class and its columns later.
    """
    cls = type(event)
    if not event.stream:
        raise InvalidEvent("field 'stream' is empty", field="stream")
    try:
        data = canonical(content_of(event))
        _decoder(cls).decode(data)
    except (msgspec.ValidationError, TypeError, ValueError, OverflowError) as exc:  # ValueError: a lone surrogate
        raise InvalidEvent(f"{cls.type_name()}: {_field_message(exc)}", field=_field_of(exc)) from None
    check_json_fields(event)
    return data


_AT = re.compile(r" - at `\$(?:\[\d+\])?\.(?P<field>[A-Za-z_0-9]+)[^`]*`$")


def _field_of(exc: Exception) -> str | None:
    m = _AT.search(str(exc))
    return m["field"] if m else None


def _field_message(exc: Exception) -> str:
    """msgspec's message with its location said as a field name."""
    text = str(exc)
    m = _AT.search(text)
    return f"field {m['field']!r}: {text[: m.start()]}" if m else text


def decode_content(data: bytes) -> dict:
    return msgspec.msgpack.decode(data)


def to_event(content: dict, seq: int, recorded_at: datetime) -> Event:
    """Build the event object for a content dict (any stored version, not upcast)."""
    cls = event_class(content["type"], content["v"])
    values = {k: content[k] for k in cls.__struct_fields__ if k in content}
    return msgspec.structs.replace(cls(**values), seq=seq, recorded_at=recorded_at)


def content_hash(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def micros(ts: datetime) -> int:
    delta = ts - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_micros(us: int) -> datetime:
    return datetime.fromtimestamp(us // 1_000_000, tz=timezone.utc).replace(microsecond=us % 1_000_000)


def event_hash(seq: int, recorded_at_us: int, chash: bytes) -> bytes:
    return hashlib.sha256(
        seq.to_bytes(8, "big") + recorded_at_us.to_bytes(8, "big", signed=True) + chash
    ).digest()


def merkle_root(leaves: list[bytes]) -> bytes:
    """Binary Merkle root with domain-separated leaves and nodes (RFC 6962 style)."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    level = [hashlib.sha256(b"\x00" + leaf).digest() for leaf in leaves]
    while len(level) > 1:
        nxt = [
            hashlib.sha256(b"\x01" + level[i] + level[i + 1]).digest()
            for i in range(0, len(level) - 1, 2)
        ]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]


_LEAF_SCHEMA = pa.schema([("seq", pa.int64()), ("recorded_at", pa.int64()), ("content_hash", pa.binary(32))])


def leaves_by_seq(tables: list[pa.Table]) -> tuple[list[int], list[int], list[bytes]]:
    """(seqs, recorded_at µs, event hashes) of a segment's tables, in seq order."""
    if not tables:
        return [], [], []
    order = pa.concat_tables([t.select(_LEAF_SCHEMA.names).cast(_LEAF_SCHEMA) for t in tables]).sort_by("seq")
    seqs = order.column("seq").to_pylist()
    times = order.column("recorded_at").to_pylist()
    leaves = [event_hash(s, r, h) for s, r, h in zip(seqs, times, order.column("content_hash").to_pylist())]
    return seqs, times, leaves


def events_to_table(events: list[Event]) -> pa.Table:
    """Events of one class as the table ``EventLog.append_tables`` takes (stream, event_id, fields)."""
    cls = type(events[0])
    schema = arrow_schema(cls)
    names = ["stream", "event_id", *cls.payload_fields()]
    return pa.table({n: [getattr(e, n) for e in events] for n in names},
                    schema=pa.schema([schema.field(n) for n in names]))


def rows_to_table(cls: type[Event], rows: list[dict]) -> pa.Table:
    """Arrow table for content dicts of one (type, version), each with seq,
    recorded_at (µs), content_hash and size added."""
    return pa.Table.from_pylist(rows, schema=arrow_schema(cls))  # a missing key is a null


def content_hashes_from_table(table: pa.Table) -> tuple[list[bytes], list[int]]:
    """(content_hash, size) of each row's canonical encoding, from its typed columns.

    Same bytes as ``canonical(row_dict)``, built without a dict per row. Keys
    are sorted; the runs of ordinary columns between blob (large binary)
    columns are encoded for all rows in one call as flat arrays ``[k1, v1,
    ...]``, whose bodies are exactly those map entries. Blobs are hashed
    straight from the Arrow buffer, never copied into Python objects: for
    transcript lines they are most of the data. Each row's encoding is thus
    a few byte strings (map header, run bodies, blob key and bin header joined
    between blobs) and the blobs, hashed with one update each.
    """
    keys = sorted(c for c in table.column_names if c not in ("seq", "recorded_at", "content_hash", "size"))
    n_rows = table.num_rows
    if n_rows == 0:
        return [], []
    n = len(keys)
    header = bytes([0x80 | n]) if n < 16 else b"\xde" + n.to_bytes(2, "big")
    # segments: per-row byte strings, alternating "between blobs" and "blob"
    segments: list[list] = []
    between: list[list] = [[header] * n_rows]
    run: list[str] = []

    def flush_run() -> None:
        if run:
            cols = [table.column(k).to_pylist() for k in run]
            rows = list(zip(*[x for k, col in zip(run, cols) for x in (repeat(k), col)]))
            skip = 1 if 2 * len(run) < 16 else 3
            between.append([memoryview(r)[skip:] for i in range(0, n_rows, _ENCODE_ROWS)
                            for r in _RAW_LIST.decode(_PLAIN.encode(rows[i : i + _ENCODE_ROWS]))])
            run.clear()

    for k in keys:
        if pa.types.is_large_binary(table.schema.field(k).type):
            flush_run()
            key = _PLAIN.encode(k)
            views = _blob_views(table.column(k))
            between.append([key + (b"\xc0" if v is None else _bin_header(len(v))) for v in views])
            segments.append([b"".join(parts) for parts in zip(*between)])
            segments.append([b"" if v is None else v for v in views])
            between = []
        else:
            run.append(k)
    flush_run()
    if between:
        segments.append([b"".join(parts) for parts in zip(*between)])
    hashes, sizes = [], []
    for row in zip(*segments):
        h = hashlib.sha256()
        for piece in row:
            h.update(piece)
        hashes.append(h.digest())
        sizes.append(sum(map(len, row)))
    return hashes, sizes


def _blob_views(column: pa.ChunkedArray) -> list[memoryview | None]:
    """Each value of a large_binary column as a view of its Arrow buffer (None
    for null), chunk by chunk: combining the chunks would copy every blob."""
    views: list[memoryview | None] = []
    for arr in column.chunks:
        buffers = arr.buffers()
        data = memoryview(buffers[2]) if buffers[2] is not None else memoryview(b"")
        offsets = pa.Array.from_buffers(pa.int64(), len(arr) + 1, [None, buffers[1]], offset=arr.offset).to_pylist()
        if arr.null_count:
            valid = arr.is_valid().to_pylist()
            views.extend(data[offsets[i] : offsets[i + 1]] if valid[i] else None for i in range(len(arr)))
        else:
            views.extend(data[offsets[i] : offsets[i + 1]] for i in range(len(arr)))
    return views


def _bin_header(length: int) -> bytes:
    if length < 0x100:
        return b"\xc4" + length.to_bytes(1, "big")
    if length < 0x10000:
        return b"\xc5" + length.to_bytes(2, "big")
    return b"\xc6" + length.to_bytes(4, "big")
