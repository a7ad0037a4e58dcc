"""Child process for the crash tests: appends (and seals) in a loop, printing
each acknowledged (seq, event_id) as soon as append returns."""

from __future__ import annotations

import random
import sys
from pathlib import Path

from chronicle.events import Annotation
from chronicle.store import EventLog


def main(path: str, tag: str, seed: int, seal_every: int) -> None:
    rng = random.Random(seed)
    log = EventLog(Path(path))
    out = sys.stdout
    out.write("ready\n")
    out.flush()
    i = 0
    while True:
        batch = []
        for _ in range(rng.randint(1, 40)):
            batch.append(Annotation(stream=f"doc:{i % 7}", event_id=f"{tag}-{i}", target="t", key="k",
                                    value="x" * rng.randint(0, 3000), author="crash"))
            i += 1
        for ack in log.append(batch):
            out.write(f"{ack.seq} {ack.event_id}\n")
        out.flush()
        if rng.randrange(seal_every) == 0:
            log.seal()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
