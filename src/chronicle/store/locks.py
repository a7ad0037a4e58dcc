"""The log's lock rules, in one place.

- ``SEAL.lock`` (a file lock): held by whoever commits to the MANIFEST (a seal, a bulk load,
  a redaction, which holds LOCK too for all of its work: appends wait while it runs).
- ``LOCK`` (a file lock): every append passes through it; it guards the WAL's head (the
  next seq, the active file, the marks) and this process's id index.
- the id index's thread lock: this process's threads apart while one indexes outside LOCK.

Order: SEAL.lock, then LOCK, then the id index's lock. ``EventLog.locked()`` takes the
last two and hands out the ``Held`` token; a method that reads or changes state LOCK
guards takes a ``Held`` as its first argument, so a call from outside the lock does not
type-check (and fails its assertion).
"""

from __future__ import annotations


class Held:
    """Proof that the caller holds LOCK and the id index's lock (made only by ``EventLog.locked``)."""

    __slots__ = ()


HELD = Held()
