"""Transcript sources: where a coding agent keeps its session files, and how
a line of one becomes a typed event.

A source is one ``TranscriptSource`` subclass (``base``) in one module
(``claude_code.py`` is the example to copy), registered in ``SOURCES``. The
generic tailer (``ingest.sessions``: cursors, generations, partial lines, tail
hashes), the daemon, ``watch status`` and ``export`` know sources only through
this interface: a file's *kind* (recorded in ``source.seen``) names the source
that reads it.

The sources that recognise their files by content (``by_content``: Codex, whose
first record is a ``session_meta``) are asked first, then those that go by name
alone (Claude Code: any ``.jsonl``); the first that claims a file wins. A file the log already knows keeps the kind it was recorded with,
so its first line is read once, not on every pass; a file recorded before any
of its lines was (empty, or its first line unfinished) is classified again, and
if it turns out another source's, the ingester starts a new generation of it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import polars as pl

from chronicle.store import Snapshot


from chronicle.ingest.sources.base import FirstLine, SourceFile, TranscriptSource
from chronicle.ingest.sources.claude_code import ClaudeCode
from chronicle.ingest.sources.codex import Codex

#: Every source (``default_roots`` lists their folders in this order).
SOURCES: tuple[TranscriptSource, ...] = (ClaudeCode(), Codex())
#: The order ``classify`` asks them in (see the module's docstring).
_ASKED = sorted(SOURCES, key=lambda s: not s.by_content)
_BY_KIND = {kind: s for s in SOURCES for kind in (*s.line_kinds, *s.meta_kinds)}
META_KINDS = frozenset(k for s in SOURCES for k in s.meta_kinds)
SESSION_KINDS = frozenset(s.session_kind for s in SOURCES)
LINE_EVENTS = tuple(dict.fromkeys(s.line_event.type_name() for s in SOURCES))
SOURCE_FIELDS = {s.line_event.type_name(): set(s.line_event.__struct_fields__) for s in SOURCES}


def by_agent(agent: str) -> TranscriptSource:
    return next(s for s in SOURCES if s.agent == agent)


def source_of(kind: str) -> TranscriptSource:
    """The source that reads files of ``kind`` (as recorded in ``source.seen``)."""
    try:
        return _BY_KIND[kind]
    except KeyError:
        raise KeyError(f"no transcript source reads files of kind {kind!r}") from None


def session_lines(snap: Snapshot, columns: list[str]) -> pl.LazyFrame | None:
    """Every agent's line events, with ``columns`` (null where a source's lines lack
    one), or None when the log holds none."""
    present = set(snap.types())
    frames = []
    for name in LINE_EVENTS:
        if name in present:
            fields = SOURCE_FIELDS[name]
            frames.append(snap.frame(name, [c for c in columns if c in fields]))
    return pl.concat(frames, how="diagonal_relaxed") if frames else None


def default_roots(env: Mapping[str, str] | None = None) -> list[Path]:
    """Every source's default folders, each once."""
    env = dict(os.environ) if env is None else env
    seen, out = set(), []
    for source in SOURCES:
        for r in source.default_roots(env):
            key = r.resolve() if r.exists() else r
            if key not in seen:
                seen.add(key)
                out.append(key)
    return out


def classify(path: Path, known: Mapping[str, str] | None = None) -> str | None:
    """The kind of ``path``: as the log recorded it, else as the first source that claims it."""
    if known:
        kind = known.get(str(path))
        if kind is not None:
            return kind
    first = FirstLine(path)
    for source in _ASKED:
        kind = source.classify(path, first)
        if kind is not None:
            return kind
    return None


def discover(paths: list[Path], known: Mapping[str, str] | None = None) -> list[SourceFile]:
    """Every transcript and sidecar under ``paths`` (roots, project folders or
    files), sorted, each once. Missing paths are skipped (the caller reports).
    ``known`` maps paths the log has seen to their recorded kind."""
    found: dict[Path, SourceFile] = {}
    for given in paths:
        p = given.expanduser().resolve()
        if p.is_file():
            kind = classify(p, known)
            if kind:
                found.setdefault(p, SourceFile(p, p.parent, kind))
            continue
        if not p.is_dir():
            continue
        for name in _files_under(os.fspath(p)):
            f = Path(name)
            if f not in found:
                kind = classify(f, known)
                if kind:
                    found[f] = SourceFile(f, p, kind)
    return sorted(found.values(), key=lambda s: s.path.parts)  # Path order, without Path's slow __lt__


def _files_under(folder: str) -> list[str]:
    """Every entry under ``folder`` that is neither a folder nor a symlink, not following
    symlinked folders; unreadable folders are skipped. One ``scandir`` per folder and no
    ``stat`` per file: a warm pass over thousands of transcripts is mostly this walk."""
    out: list[str] = []
    pending = [folder]
    while pending:
        try:
            with os.scandir(pending.pop()) as entries:
                for entry in entries:
                    if entry.is_symlink():
                        continue
                    if entry.is_dir():
                        pending.append(entry.path)
                    else:
                        out.append(entry.path)
        except OSError:
            continue
    return out


__all__ = ["FirstLine", "SourceFile", "TranscriptSource", "SOURCES", "META_KINDS", "SESSION_KINDS", "LINE_EVENTS",
           "by_agent", "classify", "default_roots", "discover", "session_lines", "source_of"]
