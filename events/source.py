"""``source.*``: what the ingesters saw of a source file, and what went wrong."""

from __future__ import annotations

from .envelope import Event


class SourceSeen(Event, frozen=True, tag="source.seen"):
    """A file was discovered. ``generation`` counts rewrites (0 for the first)."""

    path: str
    kind: str
    size: int
    generation: int = 0


class SourceAppended(Event, frozen=True, tag="source.appended"):
    """Bytes [start, end) of a file were ingested; ``prefix_sha256`` covers [0, end)."""

    path: str
    generation: int
    start: int
    end: int
    prefix_sha256: str


class SourceRewritten(Event, frozen=True, tag="source.rewritten"):
    """A file no longer starts with the bytes already ingested: a new generation begins."""

    path: str
    old_generation: int
    new_generation: int
    reason: str


class SourceError(Event, frozen=True, tag="source.error"):
    """A problem with a source that is not tied to one event (unreadable file, ...)."""

    path: str
    error: str
    line_no: int | None = None
    offset: int | None = None
