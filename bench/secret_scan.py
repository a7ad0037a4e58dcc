"""What finding secrets costs ingest: ``ingest sessions`` as the CLI runs it (each commit
scanned as it is made, then the catch-up scan of anything left) against the same ingest
with no scan, on the replicated real transcripts (``replicate.py``); and, for comparison,
the ingest followed by a scan that reads everything back from the segments.

Each round ingests the tree cold into a fresh log, once each way, taking turns (in child
processes, so each starts alike); the figures are medians and the ratio is the extra time
over the plain ingest (the budget: at most 15%). A few made-up keys are appended to some
files, so the scan also does its slow part (Python's ``re`` over the lines the Rust engine
picked out), and every one must be found.

    python bench/secret_scan.py [--copies 320] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import shutil
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
ws, tree, mode = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
log = EventLog.init(ws / "log")
t0 = time.perf_counter()
s = SessionIngester(log, ws / "lock", secrets_dir=ws if mode == "scan" else None).run([tree])
found = s.secrets_found + (scan(log, ws).findings if mode != "plain" else 0)
t1 = time.perf_counter()
print(json.dumps({"seconds": t1 - t0, "mb": s.bytes / 1e6, "findings": found, "lines": s.lines}))
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
        runs: dict[str, list[dict]] = {"plain": [], "scan": [], "readback": []}
        for r in range(rounds):
            for mode in ("plain", "scan", "readback") if r % 2 == 0 else ("readback", "scan", "plain"):
                ws = Path(tmp) / f"ws-{mode}-{r}"
                out = subprocess.run([sys.executable, "-c", CHILD, str(ws), str(tree), mode],
                                     capture_output=True, text=True, check=True)
                runs[mode].append(json.loads(out.stdout))
                shutil.rmtree(ws)
        plain = statistics.median(x["seconds"] for x in runs["plain"])
        scanning = statistics.median(x["seconds"] for x in runs["scan"])
        readback = statistics.median(x["seconds"] for x in runs["readback"])
        assert runs["readback"][0]["findings"] == runs["scan"][0]["findings"]
        return {"copies": copies, "mb": runs["scan"][0]["mb"], "lines": runs["scan"][0]["lines"], "planted": planted,
                "findings": runs["scan"][0]["findings"], "ingest_s": plain, "scan_s": scanning - plain,
                "ratio": (scanning - plain) / plain, "readback_ratio": (readback - plain) / plain}


def report(r: dict) -> None:
    print(f"{'secrets scan, ingest with it':<34} {r['scan_s']:>12,.2f} s        {r['ratio']:5.1%} of ingest "
          f"({r['ingest_s']:.2f} s for {r['mb']:,.0f} MB, {r['lines']:,} lines; {r['findings']} of "
          f"{r['planted']} planted keys found; scanning after the ingest instead, read back: "
          f"{r['readback_ratio']:.1%})")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--copies", type=int, default=320)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    report(run(a.copies, a.rounds))
