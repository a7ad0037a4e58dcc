"""Transcript bytes -> ``session.line`` columns, one row per line.

The fast path decodes every line of a chunk in one msgspec call into a small
header Struct (everything else in the record is skipped by the C parser) and
builds the ``raw`` column as Arrow buffers over the chunk itself. A chunk with
any problem (invalid UTF-8, a line that is not a JSON object, a field of an
unexpected type) falls back to line-by-line decoding for that chunk, where
each bad line gets its own ``error`` and keeps its bytes.
"""

from __future__ import annotations

import codecs
import hashlib
from itertools import accumulate
from typing import Any

import msgspec
import pyarrow as pa

from chronicle.events import SessionLine
from chronicle.store import codec

#: A line this long is still kept whole; the error notes its size.
HUGE_LINE = 50 * 1024 * 1024


class _CacheCreation(msgspec.Struct):
    ephemeral_5m_input_tokens: int | None = None
    ephemeral_1h_input_tokens: int | None = None


class _Usage(msgspec.Struct):
    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_creation_input_tokens: int | None = None
    cache_read_input_tokens: int | None = None
    cache_creation: _CacheCreation | None = None


class _Message(msgspec.Struct):
    id: str | None = None
    model: str | None = None
    role: str | None = None
    usage: _Usage | None = None


class _Embedded(msgspec.Struct):
    message: _Message | None = None
    requestId: str | None = None


class _Data(msgspec.Struct):
    message: Any = None  # only an API call copy when a dict (see _embedded)


class _AgentResult(msgspec.Struct):
    agentId: str | None = None


_AGENT_RESULT = msgspec.json.Decoder(_AgentResult)


class _Header(msgspec.Struct):
    type: str | None = None
    subtype: str | None = None
    uuid: str | None = None
    parentUuid: str | None = None
    logicalParentUuid: str | None = None
    leafUuid: str | None = None
    sessionId: str | None = None
    agentId: str | None = None
    timestamp: str | None = None
    isSidechain: bool | None = None
    isMeta: bool | None = None
    isCompactSummary: bool | None = None
    cwd: str | None = None
    gitBranch: str | None = None
    slug: str | None = None
    version: str | None = None
    message: Any = None
    requestId: str | None = None
    data: _Data | None = None
    toolUseResult: msgspec.Raw = msgspec.Raw()  # often huge; only agentId is read, and only when present


_HEADERS = msgspec.json.Decoder(list[_Header])
_HEADER = msgspec.json.Decoder(_Header)

COLUMNS = [f for f in SessionLine.__struct_fields__ if f not in ("seq", "recorded_at")]


def _as_message(value: Any) -> _Message | None:
    if not isinstance(value, dict):
        return None
    try:
        return msgspec.convert(value, _Message)
    except msgspec.ValidationError:
        return None


def _row(h: _Header) -> tuple:
    """The header columns of one decoded line (order of HEADER_COLUMNS)."""
    msg = _as_message(h.message)
    request_id = h.requestId
    embedded = None
    if msg is None and h.data is not None and isinstance(h.data.message, dict):
        emb = h.data.message
        msg = _as_message(emb.get("message"))
        if msg is not None:
            embedded = True
            rid = emb.get("requestId")
            request_id = rid if isinstance(rid, str) else None
    u = msg.usage if msg is not None else None
    cc = u.cache_creation if u is not None else None
    agent = None
    if len(h.toolUseResult) and memoryview(h.toolUseResult)[0] == 0x7B:  # an object
        try:
            agent = _AGENT_RESULT.decode(h.toolUseResult).agentId
        except msgspec.DecodeError:
            agent = None
    return (
        h.type, h.subtype, h.uuid, h.parentUuid, h.logicalParentUuid, h.leafUuid, h.sessionId, h.agentId,
        h.timestamp, h.isSidechain, h.isMeta, h.isCompactSummary, h.cwd, h.gitBranch, h.slug, h.version,
        msg.id if msg else None, request_id if msg else None, msg.model if msg else None, msg.role if msg else None,
        embedded,
        u.input_tokens if u else None, u.output_tokens if u else None,
        u.cache_creation_input_tokens if u else None,
        cc.ephemeral_5m_input_tokens if cc else None, cc.ephemeral_1h_input_tokens if cc else None,
        u.cache_read_input_tokens if u else None,
        agent,
    )


HEADER_COLUMNS = [
    "record_type", "subtype", "uuid", "parent_uuid", "logical_parent_uuid", "leaf_uuid", "session_id", "agent_id",
    "timestamp", "is_sidechain", "is_meta", "is_compact_summary", "cwd", "git_branch", "slug", "cc_version",
    "message_id", "request_id", "model", "role", "embedded",
    "input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_5m_input_tokens",
    "cache_1h_input_tokens", "cache_read_input_tokens", "result_agent_id",
]
_EMPTY = (None,) * len(HEADER_COLUMNS)


def _line_error(line: bytes) -> tuple[tuple, str | None]:
    """Header columns and error for one line, decoded on its own."""
    body = line.rstrip(b"\r\n")
    if not body.strip():
        return _EMPTY, None  # a blank line is kept, and is not a problem
    note = f" (line of {len(line):,} bytes)" if len(line) >= HUGE_LINE else ""
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as exc:
        return _EMPTY, f"invalid UTF-8 at byte {exc.start}{note}"
    try:
        value = msgspec.json.decode(body)
    except msgspec.DecodeError as exc:
        return _EMPTY, f"invalid JSON: {exc}{note}"
    if not isinstance(value, dict):
        return _EMPTY, f"not a JSON object (a {type(value).__name__}){note}"
    try:
        return _row(_HEADER.decode(body)), None
    except msgspec.ValidationError as exc:
        return _EMPTY, f"unexpected field type: {exc}{note}"


def _check_utf8(data: bytes, piece: int = 1 << 20) -> None:
    """Raise UnicodeDecodeError unless ``data`` is UTF-8, holding at most one
    decoded piece at a time (decoding a whole chunk would allocate up to 4x it)."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    view = memoryview(data)
    for i in range(0, len(data), piece):
        decoder.decode(view[i : i + piece])
    decoder.decode(b"", final=True)


def line_event_id(path_key: str, generation: int, offset: int) -> str:
    return f"L{path_key}:{generation}:{offset}"


def path_key(path: str) -> str:
    return hashlib.sha256(path.encode()).hexdigest()[:20]


def table(path: str, generation: int, offset: int, line_no: int, data: bytes) -> pa.Table:
    """``session.line`` rows for ``data``: whole lines starting at byte
    ``offset`` (line number ``line_no``) of the file; the last may lack a newline."""
    parts = data.split(b"\n")
    if parts and parts[-1] == b"":
        parts.pop()
        lengths = [len(p) + 1 for p in parts]
    else:
        lengths = [len(p) + 1 for p in parts]
        lengths[-1] -= 1  # an unterminated last line
    n = len(parts)
    rows: list[tuple] | None = None
    errors: list[str | None] = [None] * n
    blank = [not p.strip() for p in parts]
    try:
        if any(blank):
            raise ValueError("blank lines")
        if not data.isascii():
            _check_utf8(data)
        headers = _HEADERS.decode(b"[" + b",".join(parts) + b"]")
        if len(headers) != n:  # a line like `{..},{..}` splits into two elements
            raise ValueError("line count")
        rows = [_row(h) for h in headers]
    except (ValueError, msgspec.DecodeError):
        rows = []
        for i, p in enumerate(parts):
            r, errors[i] = _line_error(p)
            rows.append(r)
    offsets = [0, *accumulate(lengths)]
    raw = pa.Array.from_buffers(pa.large_binary(), n, [None, pa.array(offsets, pa.int64()).buffers()[1],
                                                       pa.py_buffer(data)])
    starts = [offset + o for o in offsets[:-1]]
    key = path_key(path)
    columns: dict[str, Any] = {
        "stream": [f"source:{path}"] * n,
        "event_id": [line_event_id(key, generation, s) for s in starts],
        "path": [path] * n,
        "generation": [generation] * n,
        "line_no": list(range(line_no, line_no + n)),
        "offset": starts,
        "raw": raw,
    }
    by_column = list(zip(*rows)) if rows else [()] * len(HEADER_COLUMNS)
    for name, values in zip(HEADER_COLUMNS, by_column):
        columns[name] = list(values)
    columns["error"] = errors
    schema = codec.arrow_schema(SessionLine)
    return pa.table(list(columns.values()), schema=pa.schema([schema.field(c) for c in columns]))
