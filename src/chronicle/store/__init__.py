"""The store: WAL, segments, MANIFEST, snapshots and integrity checks.

Names are imported on first use (PEP 562), so a light module of the store
(``manifest``, ``framing``, ``head``) can be used without loading pyarrow and
polars: ``chronicle search`` answers from its index in a fraction of a second.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

_WHERE = {
    "ConflictingEvent": "errors", "CorruptionError": "errors", "InvalidEvent": "errors",
    "NotAWorkspace": "errors", "StorageFull": "errors", "StoreError": "errors",
    "Ack": "log", "EventLog": "log", "Snapshot": "reader",
}

if TYPE_CHECKING:
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


def __getattr__(name: str) -> object:
    if name not in _WHERE:
        raise AttributeError(f"module 'chronicle.store' has no attribute {name!r}")
    value = getattr(import_module(f"chronicle.store.{_WHERE[name]}"), name)
    globals()[name] = value
    return value


__all__ = sorted(_WHERE)
