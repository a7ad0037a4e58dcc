"""What an append returns: one Ack per event, in the order given."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from itertools import repeat
from typing import NamedTuple, overload


class Ack(NamedTuple):
    """An acknowledged event: durable at ``seq``. ``duplicate`` means the
    event_id was already recorded with identical content (nothing new written)."""

    seq: int
    event_id: str
    duplicate: bool = False


class FreshAcks(Sequence[Ack]):
    """The Acks of a batch whose events were all new: consecutive seqs from
    ``first``, each made when asked for. A thousand-event append whose Acks
    nobody reads (an ingester's) then costs no thousand tuples: building them
    took about a tenth of a batched append."""

    __slots__ = ("_first", "_ids")

    def __init__(self, first: int, ids: list[str]):
        self._first = first
        self._ids = ids

    def __len__(self) -> int:
        return len(self._ids)

    @overload
    def __getitem__(self, i: int) -> Ack: ...

    @overload
    def __getitem__(self, i: slice) -> list[Ack]: ...

    def __getitem__(self, i: int | slice) -> Ack | list[Ack]:
        if isinstance(i, slice):
            return [self[k] for k in range(len(self))[i]]
        k = range(len(self._ids))[i]  # negative indexes, and IndexError past the end
        return Ack(self._first + k, self._ids[k], False)

    def __iter__(self) -> Iterator[Ack]:
        # tuple.__new__ is NamedTuple._make without the per-call overhead.
        return map(tuple.__new__, repeat(Ack), zip(range(self._first, self._first + len(self._ids)), self._ids,
                                                   repeat(False)))

    # A list in all but storage: ``acks += log.append(...)`` and comparing with a list work.
    def __add__(self, other: Sequence[Ack]) -> list[Ack]:
        return [*self, *other]

    def __radd__(self, other: Sequence[Ack]) -> list[Ack]:
        return [*other, *self]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Sequence):
            return len(other) == len(self) and all(a == b for a, b in zip(self, other))
        return NotImplemented

    def __repr__(self) -> str:
        return repr(list(self))
