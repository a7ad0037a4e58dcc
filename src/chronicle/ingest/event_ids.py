"""The event ids ingest derives from where a thing was read.

Deduplication depends on these recipes: reading the same bytes again must
give the same ids, so a recipe never changes once events carry it. Each id
starts with a letter naming its kind, then a key of the source's path.
"""

from __future__ import annotations

import hashlib


def path_key(path: str) -> str:
    """A short, stable key of a path (ids stay short whatever the path's length)."""
    return hashlib.sha256(path.encode()).hexdigest()[:20]


def line_id(key: str, generation: int, offset: int) -> str:
    """A transcript line (``session.line``): ``key`` is :func:`path_key` of its file."""
    return f"L{key}:{generation}:{offset}"


def seen_id(path: str, generation: int) -> str:
    """A file's generation first seen (``source.seen``)."""
    return f"S{path_key(path)}:{generation}"


def appended_id(path: str, generation: int, end: int) -> str:
    """Bytes of a generation ingested up to ``end`` (``source.appended``)."""
    return f"A{path_key(path)}:{generation}:{end}"


def rewritten_id(path: str, generation: int) -> str:
    """A file found rewritten; ``generation`` is the new one (``source.rewritten``)."""
    return f"R{path_key(path)}:{generation}"


def meta_id(path: str, n: int) -> str:
    """A sidecar file's ``n``-th recorded version (``session.meta``)."""
    return f"M{path_key(path)}:{n}"


def error_id(path: str, message_sha256: str) -> str:
    """A problem with a file, once per distinct message (``source.error``)."""
    return f"E{path_key(path)}:{message_sha256[:12]}"


def commit_id(repo: str, sha: str) -> str:
    """A commit of a repository (``git.commit``)."""
    return f"G{path_key(repo)}:{sha}"
