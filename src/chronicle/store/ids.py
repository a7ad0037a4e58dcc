"""The writer's index of recorded event_ids, for deduplicating appends."""

from __future__ import annotations

from collections.abc import Iterable, Set as AbstractSet


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
        # The ids alone: the set, or the keys of seq_of (a live view of them).
        self._known: AbstractSet[str] = set() if self.seq_of is None else self.seq_of.keys()

    def add(self, ids: list[str], seqs: Iterable[int]) -> None:
        """Record ``ids`` (at ``seqs``, in the same order)."""
        if self.seq_of is None:
            self._known.update(ids)  # type: ignore[attr-defined]
        else:
            self.seq_of.update(zip(ids, seqs))

    def isdisjoint(self, ids: list[str]) -> bool:
        return self._known.isdisjoint(ids)
