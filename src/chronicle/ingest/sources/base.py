"""What a transcript source is (the interface ``sources`` registers): see ``sources``."""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import msgspec
import pyarrow as pa

from chronicle.events.session import TranscriptLine


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
    #: The event each line of a line file becomes: a ``TranscriptLine`` with the
    #: source's own fields, then ``error`` (``lines.table`` fills them).
    line_event: ClassVar[type[TranscriptLine]]
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
