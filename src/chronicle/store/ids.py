"""The writer's index of recorded event_ids, for deduplicating appends."""

from __future__ import annotations

from collections.abc import Iterable


class EventIds:
    """Every event_id in the log, and each one's seq once a duplicate has needed one.

    An append asks whether any of its ids is recorded; nearly always none is.
    A set answers that at about half a dict's cost per id, and holds no int
    per event. The seqs are wanted only to acknowledge a duplicate at its
    first seq, so a writer keeps them only from the first duplicate it meets
    (it then reads the ids again, with their seqs: see ``EventLog._existing``).
    """

    __slots__ = ("_known", "seq_of")

    def __init__(self, *, keep_seqs: bool):
        #: event_id -> seq, when kept.
        self.seq_of: dict[str, int] | None = {} if keep_seqs else None
        self._known: set[str] | None = None if keep_seqs else set()

    def add(self, ids: list[str], seqs: Iterable[int]) -> None:
        """Record ``ids`` (at ``seqs``, in the same order)."""
        if self.seq_of is None:
            assert self._known is not None
            self._known.update(ids)
        else:
            self.seq_of.update(zip(ids, seqs))

    def isdisjoint(self, ids: list[str]) -> bool:
        known = self.seq_of.keys() if self.seq_of is not None else self._known
        assert known is not None
        return known.isdisjoint(ids)
