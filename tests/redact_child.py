"""Child process for the redaction crash tests: redacts in a loop, printing each redaction
that returned (its number and the seqs it changed) as soon as it returns."""

from __future__ import annotations

import random
import sys
from pathlib import Path

from chronicle.store import EventLog
from chronicle.store.redaction import Change


def main(path: str, seed: int, first: int) -> None:
    rng = random.Random(seed)
    log = EventLog(Path(path))
    head = log.snapshot().head
    out = sys.stdout
    out.write("ready\n")
    out.flush()
    k = first
    while True:
        seqs = sorted(rng.sample(range(1, head + 1), rng.randint(1, 12)))
        value = f"[redacted:{k}]"
        log.redact(lambda snap: [Change("annotation", s, {"value": value}) for s in seqs], "crash", [f"r{k}"])
        out.write(f"{k} {' '.join(map(str, seqs))}\n")
        out.flush()
        k += 1


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
