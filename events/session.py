"""``session.*``: Claude Code transcript lines, kept byte for byte."""

from __future__ import annotations

from .envelope import Event


class SessionLine(Event, frozen=True, tag="session.line"):
    """One transcript line: its exact bytes, where it was, and header fields.

    ``error`` is set (and the header fields left empty) when the line could
    not be parsed; the raw bytes are kept either way.
    """

    path: str
    generation: int
    line_no: int
    offset: int
    raw: bytes
    record_type: str | None = None
    uuid: str | None = None
    parent_uuid: str | None = None
    session_id: str | None = None
    agent_id: str | None = None
    timestamp: str | None = None
    is_sidechain: bool | None = None
    error: str | None = None


class SessionMeta(Event, frozen=True, tag="session.meta"):
    """A sidecar file (subagent ``meta.json``, workflow journal), verbatim."""

    path: str
    kind: str
    raw: bytes
