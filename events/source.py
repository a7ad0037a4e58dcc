"""``source.*``: what the ingesters saw of a source file, and what went wrong."""

from __future__ import annotations

from .envelope import Event


class SourceSeen(Event, frozen=True, tag="source.seen"):
    """A file was discovered. ``generation`` counts rewrites (0 for the first).

    ``root`` is the folder it was found under and ``rel_path`` its path below
    that root: ``chronicle export`` rebuilds the tree from them.
    """

    path: str
    root: str
    rel_path: str
    kind: str
    file_size: int
    generation: int = 0


class SourceAppended(Event, frozen=True, tag="source.appended"):
    """Bytes [start, end) of a file were ingested, lines up to ``end_line``.

    ``sha256`` covers [start, end), so the chunks of a generation prove the
    whole file; ``tail_sha256`` covers the last (up to 4 KiB) bytes before
    ``end``, which the next pass re-reads to notice a rewritten file cheaply.
    """

    path: str
    generation: int
    start: int
    end: int
    end_line: int
    sha256: str
    tail_sha256: str


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
