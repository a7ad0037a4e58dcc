"""Do the tables keep up? chronicle against ccusage on the replicated real transcripts.

The corpus: the shared real Claude Code transcripts replicated with every id
varied and timestamps shifted (``replicate.py``; 640 copies: about 700 MB,
2,640 files, 80,000 API calls). The peer: ccusage 20.0.24 from npm (20.0.26's
native package is missing from the registry), run as ``ccusage daily --json
--offline`` with ``CLAUDE_CONFIG_DIR`` pointing at the corpus; it reads every
file on every run. Every figure is a median over rounds in which chronicle and
ccusage take turns; peak memory is each process's own high-water mark (wait4).

- warm, one new assistant line: ``chronicle ingest sessions`` + ``chronicle show
  usage_daily --json`` (show brings the table current first) against one ccusage run,
  each command in its own process, and again with ``chronicle watch`` running, which
  serves both commands (``chronicle.served``) and sees the line itself: the time
  runs from the line's append to the answer, whoever does the work;
- warm, one new assistant line, one command as with ccusage: ``chronicle report
  daily --json`` (reads the new bytes, merges the new call, sums by day);
- warm, one new line, every table current: ``ingest sessions`` + ``rebuild``, without
  and with the daemon;
- full rebuild of every table: its peak RSS, at half the corpus and at all of it
  (memory must follow the largest stream, not the corpus);
- cold: ``init`` + ``ingest sessions`` + ``rebuild`` + ``show usage_daily``, with
  where the time goes;
- the floor of the warm figure: two Python processes that only import what
  ``ingest`` (msgspec, Arrow) and ``show`` (Polars, Arrow) need.

chronicle runs with bytecode caching on, as an installed package has it
(``PYTHONDONTWRITEBYTECODE`` is dropped from the children's environment).

    python bench/keepup.py [--copies 640] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import replicate  # noqa: E402

CCUSAGE_VERSION = "20.0.24"
PEERS = Path(__file__).with_name(".peers")


def ccusage_command() -> list[str]:
    """ccusage from $CCUSAGE, PATH, or installed once into bench/.peers with npm."""
    if os.environ.get("CCUSAGE"):
        return [os.environ["CCUSAGE"]]
    local = PEERS / "node_modules" / ".bin" / "ccusage"
    if not local.exists() and shutil.which("ccusage"):
        return [shutil.which("ccusage") or "ccusage"]
    if not local.exists():
        if shutil.which("npm") is None:
            raise SystemExit("ccusage is needed (npm install ccusage@20.0.24, or set CCUSAGE)")
        subprocess.run(["npm", "install", "--silent", "--prefix", str(PEERS), f"ccusage@{CCUSAGE_VERSION}"], check=True)
    return [str(local)]


def run_peak(cmd: list[str], env: dict[str, str]) -> tuple[float, int, str]:
    """Seconds, peak RSS (bytes, from wait4) and stdout of one process."""
    started = time.perf_counter()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        took = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd[:4])} failed ({proc.returncode}): {err.read().decode()[-500:]}")
        return took, usage.ru_maxrss * 1024, out.read().decode()


def chronicle(ws: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "chronicle", "--root", str(ws), *args]


def new_assistant_line(tree: Path, n: int) -> None:
    """Append one new API call (fresh message id, requestId and uuid) to a transcript."""
    target = max(tree.rglob("*.jsonl"), key=lambda p: p.stat().st_size)
    with open(target, "rb") as fh:
        template = next(line for line in fh if b'"type":"assistant"' in line and b'"usage"' in line)
    line = re.sub(rb'"id":"msg_[A-Za-z0-9]+"', b'"id":"msg_keepup%d"' % n, template, count=1)
    line = re.sub(rb'"requestId":"req_[A-Za-z0-9]+"', b'"requestId":"req_keepup%d"' % n, line, count=1)
    line = re.sub(rb'"uuid":"[0-9a-f-]+"', b'"uuid":"00000000-0000-4000-8000-%012d"' % n, line, count=1)
    with open(target, "ab") as fh:
        fh.write(line if line.endswith(b"\n") else line + b"\n")


def run(copies: int, rounds: int) -> dict:
    cc = ccusage_command()
    tmp = Path(tempfile.mkdtemp(prefix="chronicle-keepup-"))
    try:
        config = tmp / "claude"
        tree = config / "projects"
        size = replicate.replicate(tree, copies)
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env |= {"CLAUDE_CONFIG_DIR": str(config), "HOME": str(tmp)}
        ws = tmp / "ws"
        # cold, step by step
        cold = {}
        for step, args in (("init", ("init",)), ("ingest", ("ingest", "sessions")), ("rebuild", ("rebuild",)),
                           ("show", ("show", "usage_daily", "--json"))):
            took, peak, _ = run_peak(chronicle(ws, *args), env)
            cold[step] = {"s": took, "peak_mb": peak / 1e6}
        cold_cc, cold_cc_peak, _ = run_peak([*cc, "daily", "--json", "--offline"], env)
        floors = []
        for _ in range(rounds):
            a, _, _ = run_peak([sys.executable, "-c", "import msgspec, pyarrow, pyarrow.parquet"], env)
            b, _, _ = run_peak([sys.executable, "-c", "import polars, pyarrow, pyarrow.parquet"], env)
            floors.append(a + b)
        warm_show: list[float] = []
        warm_report: list[float] = []
        warm_all: list[float] = []
        peers: list[float] = []
        peaks = {"show": 0, "report": 0, "all": 0, "ccusage": 0}
        line_no = 0
        for r in range(rounds):
            order = ["show", "report", "all", "ccusage"]
            for who in order[r % 4:] + order[:r % 4]:
                if who == "ccusage":
                    took, peak, _ = run_peak([*cc, "daily", "--json", "--offline"], env)
                    peers.append(took)
                    peaks["ccusage"] = max(peaks["ccusage"], peak)
                    continue
                line_no += 1
                new_assistant_line(tree, line_no)
                if who == "report":
                    took, peak, _ = run_peak(chronicle(ws, "report", "daily", "--json"), env)
                    warm_report.append(took)
                    peaks["report"] = max(peaks["report"], peak)
                    continue
                t1, p1, _ = run_peak(chronicle(ws, "ingest", "sessions"), env)
                args = ("show", "usage_daily", "--json") if who == "show" else ("rebuild",)
                t2, p2, _ = run_peak(chronicle(ws, *args), env)
                (warm_show if who == "show" else warm_all).append(t1 + t2)
                peaks[who] = max(peaks[who], p1, p2)
        served = _served_rounds(ws, env, tree, cc, rounds, line_no)
        peers += served.pop("ccusage")
        # the last new line is in usage_daily: what ccusage counts, chronicle counts
        _, _, shown = run_peak(chronicle(ws, "show", "usage_daily", "--json"), env)
        _, _, theirs = run_peak([*cc, "daily", "--json", "--offline"], env)
        ours_out = sum(json.loads(x)["output_tokens"] for x in shown.splitlines())
        theirs_out = json.loads(theirs)["totals"]["outputTokens"]
        # full rebuild peak at half and all of the corpus
        full = {}
        _, full["all"], _ = run_peak(chronicle(ws, "rebuild", "--full"), env)
        half_tree = tmp / "half" / "projects"
        replicate.replicate(half_tree, copies // 2)
        half_env = {**env, "CLAUDE_CONFIG_DIR": str(half_tree.parent)}
        half_ws = tmp / "half-ws"
        run_peak(chronicle(half_ws, "init"), half_env)
        run_peak(chronicle(half_ws, "ingest", "sessions"), half_env)
        _, full["half"], _ = run_peak(chronicle(half_ws, "rebuild", "--full"), half_env)
        peer = statistics.median(peers)
        return {
            "corpus_mb": size / 1e6, "files": sum(1 for _ in tree.rglob("*.jsonl")), "rounds": rounds,
            "ccusage_s": peer, "ccusage_peak_mb": peaks["ccusage"] / 1e6,
            "warm_show_s": statistics.median(warm_show), "warm_show_ratio": statistics.median(warm_show) / peer,
            "warm_show_peak_mb": peaks["show"] / 1e6,
            "warm_report_s": statistics.median(warm_report),
            "warm_report_ratio": statistics.median(warm_report) / peer, "warm_report_peak_mb": peaks["report"] / 1e6,
            "floor_s": statistics.median(floors), "floor_ratio": statistics.median(floors) / peer,
            "warm_all_s": statistics.median(warm_all), "warm_all_ratio": statistics.median(warm_all) / peer,
            "warm_all_peak_mb": peaks["all"] / 1e6,
            "served_show_s": statistics.median(served["show"]), "served_show_ratio": statistics.median(served["show"]) / peer,
            "served_all_s": statistics.median(served["all"]), "served_all_ratio": statistics.median(served["all"]) / peer,
            "served_client_peak_mb": served["client_peak"] / 1e6, "daemon_peak_mb": served["daemon_peak"] / 1e6,
            "full_rebuild_peak_mb": full["all"] / 1e6, "full_rebuild_peak_half_mb": full["half"] / 1e6,
            "cold": cold, "cold_s": sum(c["s"] for c in cold.values()), "cold_ccusage_s": cold_cc,
            "cold_ratio": sum(c["s"] for c in cold.values()) / cold_cc,
            "output_tokens": {"chronicle": ours_out, "ccusage": theirs_out},
        }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _served_rounds(ws: Path, env: dict[str, str], tree: Path, cc: list[str], rounds: int, line_no: int) -> dict:
    """The warm figures with ``chronicle watch`` running: it watches the corpus, so it reads
    each new line on its own; the commands are served by it. Each figure runs from the
    append to the last command's exit. ccusage takes turns, as before."""
    import signal

    daemon = subprocess.Popen(chronicle(ws, "watch"), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 600
        while not (ws / "data" / "watch.sock").exists() or not json.loads(
                (ws / "data" / "watch.json").read_text() or "{}").get("passes"):
            if daemon.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("chronicle watch did not start serving")
            time.sleep(0.2)
        time.sleep(2)  # its second catch-up (once the watch is in place) and the slow child it starts
        out: dict = {"show": [], "all": [], "ccusage": [], "client_peak": 0}
        for r in range(rounds):
            order = ["show", "all", "ccusage"]
            for who in order[r % 3:] + order[:r % 3]:
                if who == "ccusage":
                    took, _, _ = run_peak([*cc, "daily", "--json", "--offline"], env)
                    out["ccusage"].append(took)
                    continue
                line_no += 1
                started = time.perf_counter()
                new_assistant_line(tree, line_no)
                _, p1, _ = run_peak(chronicle(ws, "ingest", "sessions"), env)
                args = ("show", "usage_daily", "--json") if who == "show" else ("rebuild",)
                _, p2, _ = run_peak(chronicle(ws, *args), env)
                out[who].append(time.perf_counter() - started)
                out["client_peak"] = max(out["client_peak"], p1, p2)
                time.sleep(1)  # the daemon's own pass over the line is done before the next round
    finally:
        daemon.send_signal(signal.SIGTERM)
        _, _, usage = os.wait4(daemon.pid, 0)
    out["daemon_peak"] = usage.ru_maxrss * 1024
    return out


def report(k: dict) -> None:
    print(f"corpus: {k['corpus_mb']:,.0f} MB of transcripts in {k['files']:,} files; ccusage {k['ccusage_s']:.2f} s "
          f"({k['ccusage_peak_mb']:,.0f} MB); medians of {k['rounds']} rounds, taking turns")
    print(f"{'warm: new line, ingest + show usage_daily':<44} {k['warm_show_s']:6.2f} s  {k['warm_show_ratio']:5.2f}x ccusage"
          f"  (peak {k['warm_show_peak_mb']:,.0f} MB)")
    print(f"{'  its floor: two Python starts, imports only':<44} {k['floor_s']:6.2f} s  {k['floor_ratio']:5.2f}x ccusage")
    print(f"{'warm: new line, report daily (one command)':<44} {k['warm_report_s']:6.2f} s  "
          f"{k['warm_report_ratio']:5.2f}x ccusage  (peak {k['warm_report_peak_mb']:,.0f} MB)")
    print(f"{'warm: new line, every table current':<44} {k['warm_all_s']:6.2f} s  {k['warm_all_ratio']:5.2f}x ccusage"
          f"  (peak {k['warm_all_peak_mb']:,.0f} MB)")
    print(f"{'the same, chronicle watch serving both':<44} {k['served_show_s']:6.2f} s  "
          f"{k['served_show_ratio']:5.2f}x ccusage  (client peak {k['served_client_peak_mb']:,.0f} MB, "
          f"daemon {k['daemon_peak_mb']:,.0f} MB)")
    print(f"{'every table current, chronicle watch serving':<44} {k['served_all_s']:6.2f} s  "
          f"{k['served_all_ratio']:5.2f}x ccusage")
    print(f"{'full rebuild of every table, peak RSS':<44} {k['full_rebuild_peak_mb']:6,.0f} MB "
          f"(half the corpus: {k['full_rebuild_peak_half_mb']:,.0f} MB)")
    steps = ", ".join(f"{name} {c['s']:.1f} s" for name, c in k["cold"].items())
    print(f"{'cold: init + ingest + every table + show':<44} {k['cold_s']:6.1f} s  {k['cold_ratio']:5.1f}x ccusage "
          f"({steps})")
    o = k["output_tokens"]
    print(f"{'output tokens counted':<44} chronicle {o['chronicle']:,}  ccusage {o['ccusage']:,}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--copies", type=int, default=640, help="copies of the real transcripts (640: about 700 MB)")
    ap.add_argument("--rounds", type=int, default=5)
    a = ap.parse_args()
    result = run(a.copies, a.rounds)
    report(result)
    out = Path(__file__).with_name("results")
    out.mkdir(exist_ok=True)
    (out / "keepup.json").write_text(json.dumps(result, indent=1))
