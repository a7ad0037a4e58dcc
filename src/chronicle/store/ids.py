"""The writer's index of recorded event_ids, for deduplicating appends."""

from __future__ import annotations

import hashlib
import os
from array import array
from bisect import bisect_left
from collections.abc import Iterable, Set as AbstractSet
from pathlib import Path

import msgspec

ID_HASHES = "IDS"
_MAGIC = b"chronicle-ids-1\n"


def id_hash(event_id: str) -> int:
    return int.from_bytes(hashlib.blake2b(event_id.encode(), digest_size=8).digest(), "little")


class SealedIdHashes:
    """The 64-bit hashes of every event_id in the first ``entries`` MANIFEST entries,
    sorted: a writer asks whether any of its few ids is recorded by bisecting
    (microseconds) instead of reading every sealed id into a set at start (a
    third of a second per 300,000 events). A hit may be a hash collision: the
    writer then reads the ids themselves. Kept in ``data/log/IDS``, a cache tied
    to the hash of the last entry it covers and checked by its own digest:
    missing, damaged or for another log, it is ignored and written again."""

    def __init__(self, entries: int, entry_hash: str, hashes: array):
        self.entries = entries
        self.entry_hash = entry_hash
        self.hashes = hashes

    @classmethod
    def load(cls, path: Path, entry_hashes: list[str]) -> SealedIdHashes | None:
        try:
            data = path.read_bytes()
        except OSError:
            return None
        head_end = data.find(b"\n", len(_MAGIC))
        if not data.startswith(_MAGIC) or head_end < 0:
            return None
        try:
            entries, entry_hash, digest = msgspec.json.decode(data[len(_MAGIC):head_end], type=tuple[int, str, str])
        except msgspec.DecodeError:
            return None
        body = data[head_end + 1:]
        if (not 0 < entries <= len(entry_hashes) or entry_hashes[entries - 1] != entry_hash
                or len(body) % 8 or hashlib.sha256(body).hexdigest() != digest):
            return None
        hashes = array("Q")
        hashes.frombytes(body)
        return cls(entries, entry_hash, hashes)

    def extended(self, ids: Iterable[str], entries: int, entry_hash: str) -> SealedIdHashes:
        return SealedIdHashes(entries, entry_hash, array("Q", sorted([*self.hashes, *map(id_hash, ids)])))

    def save(self, path: Path) -> None:
        """Written whole and renamed (a cache: a crash leaves the old one or none)."""
        body = self.hashes.tobytes()
        head = msgspec.json.encode((self.entries, self.entry_hash, hashlib.sha256(body).hexdigest()))
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_bytes(_MAGIC + head + b"\n" + body)
        os.replace(tmp, path)

    def may_hold_any(self, ids: Iterable[str]) -> bool:
        hashes, n = self.hashes, len(self.hashes)
        for eid in ids:
            h = id_hash(eid)
            i = bisect_left(hashes, h)
            if i < n and hashes[i] == h:
                return True
        return False


EMPTY = SealedIdHashes(0, "", array("Q"))


class EventIds:
    """Every event_id in the log, and each one's seq once a duplicate has needed one.

    An append asks whether any of its ids is recorded; nearly always none is.
    Sealed ids are asked of :class:`SealedIdHashes` where it covers them; the
    rest are in a set, which answers at about half a dict's cost per id and
    holds no int per event. The seqs are wanted only to acknowledge a
    duplicate at its first seq, so a writer keeps them (and every id itself)
    only from the first duplicate it meets (it then reads the ids again, with
    their seqs: see ``EventLog._existing``).
    """

    __slots__ = ("_known", "seq_of", "sealed")

    def __init__(self, *, keep_seqs: bool, sealed: SealedIdHashes = EMPTY):
        #: event_id -> seq, when kept.
        self.seq_of: dict[str, int] | None = {} if keep_seqs else None
        # The ids alone: the set, or the keys of seq_of (a live view of them).
        self._known: AbstractSet[str] = set() if self.seq_of is None else self.seq_of.keys()
        #: Hashes of the ids of the first sealed.entries MANIFEST entries (none when seqs are kept).
        self.sealed = sealed

    def add(self, ids: list[str], seqs: Iterable[int]) -> None:
        """Record ``ids`` (at ``seqs``, in the same order)."""
        if self.seq_of is None:
            self._known.update(ids)  # type: ignore[attr-defined]
        else:
            self.seq_of.update(zip(ids, seqs))

    def isdisjoint(self, ids: list[str]) -> bool:
        """True when none of ``ids`` is recorded; False when one is, or may be (a hash hit)."""
        return self._known.isdisjoint(ids) and not self.sealed.may_hold_any(ids)
