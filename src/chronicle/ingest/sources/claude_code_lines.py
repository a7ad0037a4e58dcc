"""Claude Code transcript lines -> ``session.line`` columns: the header
Struct msgspec decodes from each line (everything else in the record is
skipped by the C parser). The generic part (raw bytes, errors) is ``lines``.
"""

from __future__ import annotations

from typing import Any

import msgspec
import pyarrow as pa

from chronicle.events import SessionLine
import chronicle.ingest.sources.lines as lines
from chronicle.ingest.sources.lines import Header
from chronicle.store import codec


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


_HEADER = msgspec.json.Decoder(_Header)



def _as_message(value: Any) -> _Message | None:
    if not isinstance(value, dict):
        return None
    try:
        return msgspec.convert(value, _Message)
    except msgspec.ValidationError as exc:
        if "usage" in str(exc):  # token counts that cannot be recorded: the line's error says which
            raise
        return None


def _row(line) -> tuple:
    """The header columns of one line (order of HEADER_COLUMNS), from its bytes or a view of them."""
    h = _HEADER.decode(line)
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


HEADER = Header(tuple(HEADER_COLUMNS), _row)


def table(path: str, generation: int, offset: int, line_no: int, data: bytes) -> pa.Table:
    """``session.line`` rows for ``data`` (see ``lines.table``)."""
    return lines.table(SessionLine, HEADER, path, generation, offset, line_no, data)
