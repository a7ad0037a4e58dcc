"""Projections over several producers' logs against the same events in one log.

One log of ``n`` events (bulk-loaded annotations), and the same number split over 4 logs of
``n/4`` (4 producers, as after ``chronicle pull``); each round builds in full, from the one log
and from the union of the four, taking turns: ``events_by_type`` (a pass over every event's
envelope) and a projection of the annotations by stream (every column of every event read). Figures are medians; the ratio is the union's time
over the single log's (target: at most 1.2x).

    python bench/union.py [--events 1000000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import pyarrow as pa

from chronicle.projection import Engine, discover
from chronicle.store import EventLog
from chronicle.union import UnionSnapshot

CHUNK = 250_000
#: A workspace projection: the annotations by stream, reading every field of every event.
BY_STREAM = """
import polars as pl
INPUTS = ["annotation"]
OUTPUTS = ["annotations_by_stream"]
def build(inputs):
    a = inputs["annotation"]
    return {"annotations_by_stream": a.group_by("stream").agg(
        pl.len().alias("events"), pl.col("value").str.len_bytes().sum().alias("value_bytes"),
        pl.col("key").n_unique().alias("keys"), pl.col("seq").min().alias("first_seq"),
        pl.col("seq").max().alias("last_seq")).sort("stream").collect()}
"""


def _fill(log: EventLog, first: int, n: int) -> None:
    for start in range(first, first + n, CHUNK):
        m = min(CHUNK, first + n - start)
        streams = [f"doc:{i % 1000}" for i in range(start, start + m)]
        log.append_table("annotation", pa.table({
            "stream": streams, "event_id": [f"r{i}" for i in range(start, start + m)], "target": streams,
            "key": [f"k{i % 7}" for i in range(start, start + m)], "author": ["bench"] * m,
            "value": [f"value {i} " + "x" * (i % 97) for i in range(start, start + m)]}))


def run(n: int, rounds: int, producers: int = 4) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="chronicle-bench-union-"))
    try:
        single = EventLog.init(tmp / "single")
        _fill(single, 0, n)
        parts = []
        for k in range(producers):
            log = EventLog.init(tmp / f"producer-{k}")
            _fill(log, k * (n // producers), n // producers)
            parts.append((f"producer-{k}", log.snapshot()))
        (tmp / "mine").mkdir()
        (tmp / "mine" / "annotations_by_stream.py").write_text(BY_STREAM)
        projections = {k: v for k, v in discover([tmp / "mine"]).items()
                       if k in ("events_by_type", "annotations_by_stream")}
        one, many = [], []
        for r in range(rounds):
            t = time.perf_counter()
            Engine(tmp / f"single-tables-{r}", projections).run(single.snapshot(), full=True)
            one.append(time.perf_counter() - t)
            t = time.perf_counter()
            Engine(tmp / f"union-tables-{r}", projections).run(UnionSnapshot(parts), full=True)
            many.append(time.perf_counter() - t)
        m = statistics.median
        return {"events": n, "producers": producers, "single_s": m(one), "union_s": m(many),
                "ratio": m(many) / m(one)}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def report(r: dict) -> None:
    print(f"{'tables over ' + str(r['producers']) + ' producers':<34} {r['union_s']:>10.2f} s   "
          f"{r['ratio']:5.2f}x the same {r['events']:,} events in one log ({r['single_s']:.2f} s)")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    report(run(a.events, a.rounds))
