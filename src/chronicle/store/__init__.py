"""The store: WAL, segments, MANIFEST, snapshots and integrity checks."""

from chronicle.store.errors import (
    ConflictingEvent,
    CorruptionError,
    InvalidEvent,
    NotAWorkspace,
    StorageFull,
    StoreError,
)
from chronicle.store.log import Ack, EventLog
from chronicle.store.reader import Snapshot

__all__ = [
    "Ack",
    "ConflictingEvent",
    "CorruptionError",
    "EventLog",
    "InvalidEvent",
    "NotAWorkspace",
    "Snapshot",
    "StorageFull",
    "StoreError",
]
