"""Exceptions raised by the store. Each names the file and place it is about."""

from __future__ import annotations

from chronicle.errors import EXIT_USAGE, ChronicleError


class StoreError(ChronicleError):
    """Base of every store error: the workspace or storage is unusable (exit 3)."""


class InvalidEvent(StoreError):
    """An event failed validation; nothing from its batch was written."""

    exit_code = EXIT_USAGE
    label = "error: "

    def __init__(self, message: str, *, index: int | None = None, field: str | None = None):
        super().__init__(message)
        self.index = index
        self.field = field


class ConflictingEvent(StoreError):
    """An event_id already exists with different content; nothing was written."""

    exit_code = EXIT_USAGE
    label = "error: "

    def __init__(self, event_id: str, seq: int, index: int | None = None):
        super().__init__(
            f"event_id {event_id!r} already exists at seq {seq} with different content"
        )
        self.event_id = event_id
        self.seq = seq
        self.index = index


class CorruptionError(StoreError):
    """Stored bytes do not match what was committed."""

    def __init__(self, path: str, start: int, end: int | None, reason: str):
        where = f"bytes {start}..{end}" if end is not None else f"byte {start}"
        super().__init__(f"{path}: {where}: {reason}")
        self.path = path
        self.start = start
        self.end = end
        self.reason = reason


class StorageFull(StoreError):
    """The disk (or a file-size limit) refused a write; the log is unchanged."""


class NotAWorkspace(StoreError):
    """The directory has no chronicle log (run `chronicle init`)."""
