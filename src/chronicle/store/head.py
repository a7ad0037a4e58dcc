"""The log's head seq, read from the MANIFEST and the WAL frames alone.

Light on purpose (no Arrow, no Polars, no event classes): a reader that only
needs to know whether its tables are behind the log asks this.
"""

from __future__ import annotations

import os
from pathlib import Path

import msgspec

from chronicle.store import framing, manifest

_SPAN = msgspec.msgpack.Decoder(tuple[int, int, bytes, msgspec.Raw])


def span(payload: bytes | memoryview) -> tuple[int, int, int]:
    """(first seq, number of events, recorded_at µs) of a WAL payload, without decoding its events."""
    first, rec, versions, _ = _SPAN.decode(payload)
    return first, len(versions), rec


def log_head(log_dir: Path) -> int:
    """The last seq in the MANIFEST and the WAL (as readers see them; no lock taken)."""
    for _ in range(50):
        m = manifest.parse(log_dir / "MANIFEST")
        head = m.entries[-1].last_seq if m.entries else 0
        try:
            for name in sorted(n for n in os.listdir(log_dir / "wal") if n.endswith(".wal")):
                with open(log_dir / "wal" / name, "rb") as fh:
                    for p in framing.scan(fh.read()).payloads:
                        first, count, _ = span(p)
                        head = max(head, first + count - 1)
        except FileNotFoundError:  # sealed meanwhile
            continue
        return head
    return head
