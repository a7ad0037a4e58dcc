"""What finding secrets costs ingest: ``ingest sessions`` with and without the scan that
follows it, on the replicated real transcripts (``replicate.py``).

Each round ingests the tree cold into a fresh log (in a child process, so each starts
alike), then scans what it recorded; the ratio is scan time over ingest time (the
issue's budget: at most 15% of ingest). Rounds take turns and the figures are medians.
A few made-up keys are appended to some files, so the scan also does its slow part
(Python's ``re`` over the lines the Rust engine picked out).

    python bench/secret_scan.py [--copies 320] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import replicate  # noqa: E402

CHILD = r"""
import json, sys, time
from pathlib import Path
from chronicle.ingest.sessions import SessionIngester
from chronicle.secrets.scan import scan
from chronicle.store import EventLog
ws, tree = Path(sys.argv[1]), Path(sys.argv[2])
log = EventLog.init(ws / "log")
t0 = time.perf_counter()
s = SessionIngester(log, ws / "lock").run([tree])
t1 = time.perf_counter()
found = scan(log, ws)
t2 = time.perf_counter()
print(json.dumps({"ingest_s": t1 - t0, "scan_s": t2 - t1, "mb": s.bytes / 1e6, "findings": found.findings,
                  "lines": s.lines}))
"""


def _plant(tree: Path, every: int = 50) -> int:
    """Append one made-up key (a line a user typed) to every ``every``-th transcript."""
    key = "gh" + "p_" + "Q1w2E3r4T5" * 3 + "y6u7i8"
    files = sorted(tree.rglob("*.jsonl"))
    for f in files[::every]:
        line = {"type": "user", "uuid": f"planted-{f.stem}", "sessionId": f.stem, "timestamp": "2026-11-01T00:00:00Z",
                "message": {"role": "user", "content": f"use {key} for the deploy"}}
        with open(f, "a") as fh:
            fh.write(json.dumps(line) + "\n")
    return len(files[::every])


def run(copies: int, rounds: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="chronicle-secrets-bench-") as tmp:
        tree = Path(tmp) / "projects"
        replicate.replicate(tree, copies)
        planted = _plant(tree)
        results = []
        for r in range(rounds):
            out = subprocess.run([sys.executable, "-c", CHILD, str(Path(tmp) / f"ws{r}"), str(tree)],
                                 capture_output=True, text=True, check=True)
            results.append(json.loads(out.stdout))
        ingest = statistics.median(x["ingest_s"] for x in results)
        scan_s = statistics.median(x["scan_s"] for x in results)
        return {"copies": copies, "mb": results[0]["mb"], "lines": results[0]["lines"], "planted": planted,
                "findings": results[0]["findings"], "ingest_s": ingest, "scan_s": scan_s, "ratio": scan_s / ingest}


def report(r: dict) -> None:
    print(f"{'secrets scan after ingest':<34} {r['scan_s']:>12,.2f} s        {r['ratio']:5.1%} of ingest "
          f"({r['ingest_s']:.2f} s for {r['mb']:,.0f} MB, {r['lines']:,} lines; {r['findings']} of "
          f"{r['planted']} planted keys found)")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--copies", type=int, default=320)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    report(run(a.copies, a.rounds))
