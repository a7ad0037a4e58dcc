"""Transcript bytes -> ``session.line`` columns, one row per line.

Each line is decoded by msgspec straight from a view of the chunk into a
small header Struct (everything else in the record is skipped by the C
parser), and the ``raw`` column is built as Arrow buffers over the chunk
itself. A line that fails (not JSON, not an object, a field of an unexpected
type) is decoded again on its own to name the problem in its ``error``; it
keeps its bytes. A chunk that is not all UTF-8 is checked line by line.
"""

from __future__ import annotations

import codecs
from typing import Any

import msgspec
import pyarrow as pa

from chronicle.events import SessionLine
from chronicle.ingest import event_ids
from chronicle.store import codec

#: A line this long is still kept whole; the error notes its size.
HUGE_LINE = 50 * 1024 * 1024


# Token counts are int64 columns: a larger number fails the line's decode, so
# the line is kept with an error naming the field instead of poisoning the log.
Int64 = codec.Int64


class _CacheCreation(msgspec.Struct):
    ephemeral_5m_input_tokens: Int64 | None = None
    ephemeral_1h_input_tokens: Int64 | None = None


class _Usage(msgspec.Struct):
    input_tokens: Int64 | None = None
    output_tokens: Int64 | None = None
    cache_creation_input_tokens: Int64 | None = None
    cache_read_input_tokens: Int64 | None = None
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
    except msgspec.ValidationError as exc:
        if "usage" in str(exc):  # token counts that cannot be recorded: the line's error says which
            raise
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


def table(path: str, generation: int, offset: int, line_no: int, data: bytes) -> pa.Table:
    """``session.line`` rows for ``data``: whole lines starting at byte
    ``offset`` (line number ``line_no``) of the file; the last may lack a newline.

    Lines are decoded from views of ``data`` and ``raw`` is built over its
    buffer, so the chunk is never copied."""
    spans = line_spans(data)
    n = len(spans) - 1
    view = memoryview(data)
    errors: list[str | None] = [None] * n
    rows: list[tuple] = []
    add = rows.append
    if data.isascii() or _is_utf8(data):
        decode = _HEADER.decode
        for i in range(n):
            try:
                add(_row(decode(view[spans[i] : spans[i + 1]])))
            except msgspec.DecodeError:  # a ValidationError is one too
                row, errors[i] = _line_error(data[spans[i] : spans[i + 1]])
                add(row)
    else:  # some line is not UTF-8: find which, line by line
        for i in range(n):
            row, errors[i] = _line_error(data[spans[i] : spans[i + 1]])
            add(row)
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
    by_column = list(zip(*rows)) if rows else [()] * len(HEADER_COLUMNS)
    for name, values in zip(HEADER_COLUMNS, by_column):
        columns[name] = list(values)
    columns["error"] = errors
    schema = codec.arrow_schema(SessionLine)
    return pa.table(list(columns.values()), schema=pa.schema([schema.field(c) for c in columns]))
