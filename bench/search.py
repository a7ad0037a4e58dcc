"""`chronicle search` against ripgrep over the same transcripts, side by side.

A generated projects tree (``transcripts.py``: the real mix of record kinds,
tool results with file contents, pasted images) with a rare word said in a
handful of messages, the "where did I do that?" query. Each round runs
``rg -c WORD TREE`` and ``chronicle search WORD --json`` as processes, taking
turns, warm (files in the page cache, the index current). Also: the index
build time per GB of transcripts and its size, a common word (many hits
ranked), and an incremental update after one new line (ingest, then the
search that takes the line in and finds it).

    python bench/search.py --mb 700
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import transcripts  # noqa: E402

RARE = "zanzibarquokka"


def _chronicle(ws: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "chronicle", *args], capture_output=True, text=True,
                          env={**os.environ, "CHRONICLE_ROOT": str(ws)}, timeout=3600)


def _timed(cmd: list[str], ws: Path) -> tuple[float, str]:
    started = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "CHRONICLE_ROOT": str(ws)})
    took = time.perf_counter() - started
    if proc.returncode not in (0, 1):  # rg exits 1 when nothing matches
        raise RuntimeError(f"{cmd[0]} failed: {proc.stderr}")
    return took, proc.stdout


def _say(path: Path, session: str, words: list[str]) -> None:
    """A session whose user says each of ``words`` once (what a search should find)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        for i, text in enumerate(words):
            fh.write(json.dumps({"type": "user", "uuid": f"{session}-{i}-{time.time_ns()}", "sessionId": session,
                                 "cwd": "/home/user/project0", "timestamp": "2026-11-02T10:00:00Z",
                                 "message": {"role": "user", "content": text}}) + "\n")


def run(mb: float, rounds: int = 5) -> dict:
    rg = shutil.which("rg")
    if rg is None:
        raise SystemExit("ripgrep (rg) is not installed: apt-get install ripgrep")
    tmp = Path(tempfile.mkdtemp(prefix="chronicle-search-bench-"))
    try:
        tree, ws = tmp / "projects", tmp / "ws"
        size = transcripts.generate(tree, mb)
        _say(tree / "-home-user-project0" / "needle.jsonl", "needle",
             [f"where did the {RARE} test start failing", "unrelated words", f"fixed {RARE} at last"])
        _chronicle(ws, "init")
        started = time.perf_counter()
        if _chronicle(ws, "ingest", "sessions", str(tree)).returncode:
            raise RuntimeError("ingest failed")
        ingest_s = time.perf_counter() - started
        started = time.perf_counter()
        first = _chronicle(ws, "search", RARE, "--json")
        build_s = time.perf_counter() - started
        assert len(first.stdout.splitlines()) == 2, first.stdout + first.stderr
        index_mb = (ws / "data" / "tables" / "search.sqlite").stat().st_size / 1e6
        ours: list[float] = []
        theirs: list[float] = []
        common_ours: list[float] = []
        common_theirs: list[float] = []
        subprocess.run([rg, "-c", RARE, str(tree)], capture_output=True)  # warm the page cache
        for _ in range(rounds):
            t, out = _timed([rg, "-c", RARE, str(tree)], ws)
            theirs.append(t)
            assert sum(int(x.rsplit(":", 1)[1]) for x in out.splitlines()) == 2
            t, out = _timed([sys.executable, "-m", "chronicle", "search", RARE, "--json"], ws)
            ours.append(t)
            assert len(out.splitlines()) == 2
            common_theirs.append(_timed([rg, "-c", "segment", str(tree)], ws)[0])
            common_ours.append(_timed([sys.executable, "-m", "chronicle", "search", "segment", "--json"], ws)[0])
        updates: list[float] = []
        for i in range(3):
            word = f"freshword{i}x"
            _say(tree / "-home-user-project0" / "needle.jsonl", "needle", [f"just said {word}"])
            if _chronicle(ws, "ingest", "sessions", str(tree)).returncode:
                raise RuntimeError("ingest failed")
            t, out = _timed([sys.executable, "-m", "chronicle", "search", word, "--json"], ws)
            assert len(out.splitlines()) == 1, out
            updates.append(t)
        med = statistics.median
        return {
            "tree_mb": size / 1e6, "ingest_s": ingest_s, "index_build_s": build_s,
            "index_build_s_per_gb": build_s / (size / 1e9), "index_mb": index_mb,
            "rare_chronicle_s": med(ours), "rare_rg_s": med(theirs), "rare_ratio": med(ours) / med(theirs),
            "common_chronicle_s": med(common_ours), "common_rg_s": med(common_theirs),
            "common_ratio": med(common_ours) / med(common_theirs),
            "one_new_line_search_s": med(updates),
        }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mb", type=float, default=700)
    ap.add_argument("--rounds", type=int, default=5)
    r = run(ap.parse_args().mb, ap.parse_args().rounds)
    print(json.dumps(r, indent=1))
    print(f"warm rare word: chronicle {r['rare_chronicle_s'] * 1000:.0f} ms, rg {r['rare_rg_s'] * 1000:.0f} ms "
          f"({r['rare_ratio']:.2f}x rg); common word: {r['common_ratio']:.2f}x rg; "
          f"index {r['index_build_s_per_gb']:.0f} s/GB, {r['index_mb']:.0f} MB for {r['tree_mb']:.0f} MB; "
          f"one new line -> found in {r['one_new_line_search_s']:.2f} s")
