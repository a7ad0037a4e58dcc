"""``session.*``: Claude Code transcript files, kept byte for byte.

A ``session.line`` holds one line's exact bytes (newline included, so the
lines of a file concatenate back to the file) plus header fields read from it
at ingest, so projections rarely need to parse JSON. ``error`` says what could
not be read (the header fields are then empty); the bytes are kept either way.
Field names follow the transcript keys (``parentUuid`` -> ``parent_uuid``).
"""

from __future__ import annotations

from .envelope import Event


class TranscriptLine(Event, frozen=True):
    """What every coding agent's line event holds first: where the line is and its exact
    bytes (a source's own fields follow, then ``error``; see ``ingest.sources``)."""

    path: str
    generation: int
    line_no: int
    offset: int
    raw: bytes


class SessionLine(TranscriptLine, frozen=True, tag="session.line"):
    record_type: str | None = None
    subtype: str | None = None
    uuid: str | None = None
    parent_uuid: str | None = None
    logical_parent_uuid: str | None = None
    leaf_uuid: str | None = None
    session_id: str | None = None
    agent_id: str | None = None
    timestamp: str | None = None
    is_sidechain: bool | None = None
    is_meta: bool | None = None
    is_compact_summary: bool | None = None
    cwd: str | None = None
    git_branch: str | None = None
    slug: str | None = None
    cc_version: str | None = None
    #: The API call a record belongs to (assistant records, and subagent
    #: calls copied into ``progress`` records, where ``embedded`` is true).
    message_id: str | None = None
    request_id: str | None = None
    model: str | None = None
    role: str | None = None
    embedded: bool | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_creation_input_tokens: int | None = None
    cache_5m_input_tokens: int | None = None
    cache_1h_input_tokens: int | None = None
    cache_read_input_tokens: int | None = None
    #: ``toolUseResult.agentId``: the subagent a tool call spawned.
    result_agent_id: str | None = None
    error: str | None = None


class SessionMeta(Event, frozen=True, tag="session.meta"):
    """A sidecar file (subagent ``meta.json``, workflow run file), verbatim."""

    path: str
    kind: str
    sha256: str
    raw: bytes
