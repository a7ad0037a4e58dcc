"""The watch daemon under load: latency from an appended transcript line to its row in
`api_calls`, idle CPU, and resident memory after ingesting a large tree.

    python bench/daemon.py [--mb 1000] [--samples 30]
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

import polars as pl

from transcripts import generate

TICK = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _line(i: int) -> bytes:
    return json.dumps({"type": "assistant", "sessionId": "bench-live", "uuid": f"live-{i}", "cwd": "/w",
                       "requestId": f"req-live-{i}", "timestamp": "2026-03-04T10:00:01Z",
                       "message": {"id": f"msg-live-{i}", "role": "assistant", "model": "claude-haiku-4-5-20251001",
                                   "content": [{"type": "text", "text": "ok"}],
                                   "usage": {"input_tokens": 1, "output_tokens": 1}}}).encode() + b"\n"


def run(mb: float, samples: int) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="chronicle-daemon-bench-"))
    proc = None
    try:
        projects = tmp / "projects"
        size = generate(projects, mb)
        ws = tmp / "ws"
        env = {**os.environ, "CHRONICLE_ROOT": str(ws)}
        subprocess.run([sys.executable, "-m", "chronicle", "init"], env=env, check=True, capture_output=True)
        (ws / "chronicle.toml").write_text(f'[watch]\nclaude_roots = ["{projects}"]\n')
        started = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "chronicle", "watch"], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        state = ws / "data" / "watch.json"
        while not state.exists():
            assert proc.poll() is None, proc.stderr.read().decode()
            time.sleep(0.1)
        catch_up = time.perf_counter() - started
        time.sleep(2)
        rss_after = _rss_mb(proc.pid)
        cpu0, t0 = _cpu_seconds(proc.pid), time.perf_counter()
        time.sleep(10)
        idle = (_cpu_seconds(proc.pid) - cpu0) / (time.perf_counter() - t0) * 100
        live = projects / "-bench-live" / "live.jsonl"
        live.parent.mkdir()
        live.touch()
        time.sleep(1)
        table = ws / "data" / "tables" / "api_calls.parquet"
        latencies = []
        for i in range(samples):
            t = time.perf_counter()
            with open(live, "ab") as fh:
                fh.write(_line(i))
            while True:
                try:
                    if pl.read_parquet(table, columns=["message_id"])["message_id"].is_in([f"msg-live-{i}"]).any():
                        break
                except (OSError, pl.exceptions.ComputeError):
                    pass
                if time.perf_counter() - t > 30:
                    raise TimeoutError(f"sample {i}: no api_calls row after 30 s")
                time.sleep(0.01)
            latencies.append(time.perf_counter() - t)
            time.sleep(0.3)
        latencies.sort()
        return {"tree_mb": size / 1e6, "catch_up_s": catch_up, "rss_mb_after_ingest": rss_after,
                "idle_cpu_percent": idle, "latency_p50_s": statistics.median(latencies),
                "latency_p95_s": latencies[max(0, int(len(latencies) * 0.95) - 1)],
                "peak_rss_mb": _peak_mb(proc.pid)}
    finally:
        if proc is not None and proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=60)
        shutil.rmtree(tmp, ignore_errors=True)


def _peak_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mb", type=float, default=1000)
    ap.add_argument("--samples", type=int, default=30)
    a = ap.parse_args()
    print(json.dumps(run(a.mb, a.samples), indent=1))
