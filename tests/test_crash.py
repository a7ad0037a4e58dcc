"""SIGKILL a real appending process at random instants, including mid-seal.

After every kill: the log opens, every acknowledged event is present exactly
once at its acknowledged seq, seqs are contiguous from 1, and verify passes.
"""

from __future__ import annotations

import os
import random
import sys
from pathlib import Path

import polars as pl

from chronicle.store import EventLog
from chronicle.store.integrity import verify

from conftest import ROOT, kill_at_random

TRIALS = int(os.environ.get("CHRONICLE_CRASH_TRIALS", "60"))
TRIALS_PER_LOG = 10


def _run_and_kill(path: Path, tag: str, seed: int, rng: random.Random) -> dict[str, int]:
    acked: dict[str, int] = {}

    def acknowledged(line: str) -> None:
        seq, eid = line.split()
        acked[eid] = int(seq)

    kill_at_random([sys.executable, str(ROOT / "tests" / "crash_child.py"), str(path), tag, str(seed), "3"],
                   rng.uniform(0.005, 0.35), acknowledged)
    return acked


def _check(path: Path, acked: dict[str, int]) -> None:
    log = EventLog(path)
    env = log.snapshot().envelope().collect()
    seqs = env["seq"].to_list()
    assert seqs == list(range(1, len(seqs) + 1)), "seqs are not contiguous from 1"
    assert env["event_id"].n_unique() == env.height, "an event is present twice"
    found = dict(zip(env["event_id"].to_list(), seqs))
    lost = {eid: s for eid, s in acked.items() if found.get(eid) != s}
    assert not lost, f"{len(lost)} acknowledged events lost or moved, e.g. {list(lost.items())[:3]}"
    # The next writer repairs a torn tail; then the whole log verifies clean.
    log.append([])
    from chronicle.events import Annotation

    log.append([Annotation(stream="doc:probe", target="t", key="k", value="v", author="probe")])
    report = verify(log)
    assert report.ok, [str(p) for p in report.problems]
    assert not report.problems, [str(p) for p in report.problems]
    log.close()


def test_sigkill_at_random_instants_loses_no_acknowledged_event(tmp_path: Path) -> None:
    rng = random.Random(20261122)
    acked: dict[str, int] = {}
    path = None
    total_acked = 0
    for trial in range(TRIALS):
        if trial % TRIALS_PER_LOG == 0:
            path = tmp_path / f"log{trial}"
            EventLog.init(path).close()
            acked = {}
        assert path is not None
        got = _run_and_kill(path, f"t{trial}", rng.randrange(1 << 30), rng)
        acked.update(got)
        total_acked += len(got)
        _check(path, acked)
    assert total_acked > TRIALS, "the children acknowledged almost nothing; the test proved nothing"


def test_sealed_and_unsealed_reads_agree_after_kill(tmp_path: Path) -> None:
    """After a kill, sealing what is left keeps the same events at the same seqs."""
    path = tmp_path / "log"
    EventLog.init(path).close()
    acked = _run_and_kill(path, "s", 7, random.Random(3))
    log = EventLog(path)
    before = log.snapshot().envelope().collect()
    log.seal()
    after = log.snapshot().envelope().collect()
    assert before.select("seq", "event_id", "content_hash").equals(after.select("seq", "event_id", "content_hash"))
    assert set(acked) <= set(after["event_id"].to_list())
    assert pl.Series(after["seq"]).is_sorted()
