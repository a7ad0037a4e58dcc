"""Transcript sources: where a coding agent keeps its session files, and how
a line of one becomes a typed event.

A source is one ``TranscriptSource`` subclass in one module
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
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import msgspec
import polars as pl
import pyarrow as pa

from chronicle.events import Event
from chronicle.store import Snapshot


@dataclass(frozen=True, slots=True)
class SourceFile:
    path: Path  # absolute
    root: Path  # the folder it was found under
    kind: str

    @property
    def rel_path(self) -> str:
        return self.path.relative_to(self.root).as_posix()


class _Envelope(msgspec.Struct):
    type: str | None = None


_ENVELOPE = msgspec.json.Decoder(_Envelope)
#: The first line is read at most this far to learn a file's kind.
FIRST_LINE_LIMIT = 1 << 20


class FirstLine:
    """A file's first record, read only if a source asks (most go by name)."""

    __slots__ = ("path", "_read", "_type")

    def __init__(self, path: Path):
        self.path = path
        self._read = False
        self._type: str | None = None

    @property
    def record_type(self) -> str | None:
        """The first record's ``type``, or None (not an object, unreadable, unfinished)."""
        if not self._read:
            self._read = True
            try:
                # never blocking: a FIFO named like a transcript is left to the ingester to refuse
                fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
                with os.fdopen(fd, "rb") as fh:
                    if stat.S_ISREG(os.fstat(fd).st_mode):
                        self._type = _ENVELOPE.decode(fh.readline(FIRST_LINE_LIMIT)).type
            except (OSError, msgspec.DecodeError):
                self._type = None
        return self._type


class TranscriptSource:
    """One coding agent's session files. Subclass, set the class attributes,
    implement the three methods, and add an instance to ``SOURCES``."""

    #: The agent, as the ``agent`` column of the tables names it.
    agent: ClassVar[str]
    #: The event each line of a line file becomes (with ``path``, ``generation``,
    #: ``line_no``, ``offset``, ``raw`` and ``error`` fields, as ``lines.table`` fills them).
    line_event: ClassVar[type[Event]]
    #: File kinds read line by line into ``line_event``s.
    line_kinds: ClassVar[tuple[str, ...]]
    #: The kind of a session's own transcript (what ``export session`` writes).
    session_kind: ClassVar[str]
    #: File kinds kept whole as ``session.meta`` events (sidecars).
    meta_kinds: ClassVar[tuple[str, ...]] = ()
    #: Where ``ingest sessions`` looks when given no PATH (for the message when none exists).
    roots_help: ClassVar[str]
    #: Whether ``classify`` reads the file's first record (such sources are asked first).
    by_content: ClassVar[bool] = False

    def default_roots(self, env: Mapping[str, str]) -> list[Path]:
        """The folders the agent writes its sessions to, existing or not."""
        raise NotImplementedError

    def classify(self, path: Path, first: FirstLine) -> str | None:
        """The kind of file ``path`` is, or None when this source does not read it."""
        raise NotImplementedError

    def line_table(self, path: str, generation: int, offset: int, line_no: int, data: bytes) -> pa.Table:
        """The ``line_event`` rows of ``data``: whole lines from byte ``offset`` (line ``line_no``)."""
        raise NotImplementedError


from chronicle.ingest.sources.claude_code import ClaudeCode  # noqa: E402  (the sources need the base class above)
from chronicle.ingest.sources.codex import Codex  # noqa: E402

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
        for dirpath, dirnames, filenames in os.walk(p, onerror=None, followlinks=False):
            dirnames.sort()
            for name in sorted(filenames):
                f = Path(dirpath) / name
                if f in found or f.is_symlink():
                    continue
                kind = classify(f, known)
                if kind:
                    found[f] = SourceFile(f, p, kind)
    return sorted(found.values(), key=lambda s: s.path)
