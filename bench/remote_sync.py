"""Push and pull of sealed segments to a local S3 server (moto), against a bare copy of the same
files with ``pyarrow.fs`` (what a user would otherwise script: upload the segment folder, download
it again).

A log of about ``--mb`` MB of sealed segments is made by bulk loads (annotations holding random
text, so zstd leaves them their size). Each round takes turns: chronicle's ``push`` into a fresh
bucket then ``pull`` into a fresh workspace (the MANIFEST chain checked, every file's sha256
checked, lines committed), and ``pyarrow.fs.copy_files`` of the segment folder up and back down.
Figures are medians; the ratio is chronicle's throughput over the bare copy's (target: at least
0.9x).

    python bench/remote_sync.py [--mb 1024] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from s3_server import CREDENTIALS, moto_server, new_bucket  # noqa: E402


def make_log(path: Path, mb: int) -> int:
    """A log with about ``mb`` MB of sealed segments; its segment bytes."""
    import pyarrow as pa

    from chronicle.store import EventLog

    log = EventLog.init(path)
    value = 64 * 1024
    per_commit = 64  # 4 MB of values per commit
    rows = max(1, 2 * mb * (1 << 20) // value)  # hex text: zstd halves it
    for start in range(0, rows, per_commit):
        n = min(per_commit, rows - start)
        log.append_tables({"annotation": pa.table({
            "stream": ["doc:bench"] * n, "event_id": [f"b{start + i}" for i in range(n)],
            "target": ["doc:bench"] * n, "key": ["k"] * n,
            "value": [os.urandom(value // 2).hex() for _ in range(n)], "author": ["bench"] * n})})
    log.close()
    return sum(f.stat().st_size for f in (path / "segments").iterdir())


def chronicle_round(workspace: Path, target: Path, endpoint: str, bucket: str) -> tuple[float, float]:
    """(push seconds, pull seconds) through the CLI as a user runs it."""
    env = {**os.environ, **CREDENTIALS, "AWS_ENDPOINT_URL": endpoint}

    def run(root: Path, *args: str) -> None:
        subprocess.run([sys.executable, "-m", "chronicle", *args], env={**env, "CHRONICLE_ROOT": str(root)},
                       check=True, capture_output=True)

    for root in (workspace, target):
        for f in ("remotes.json",):
            (root / "data" / f).unlink(missing_ok=True)
    run(workspace, "remote", "add", "bench", f"s3://{bucket}")
    t0 = time.perf_counter()
    run(workspace, "push")
    t1 = time.perf_counter()
    run(target, "remote", "add", "bench", f"s3://{bucket}")
    t2 = time.perf_counter()
    run(target, "pull")
    t3 = time.perf_counter()
    return t1 - t0, t3 - t2


def bare_round(segments: Path, down: Path, endpoint: str, bucket: str) -> tuple[float, float]:
    """(upload seconds, download seconds) of the segment folder with pyarrow.fs."""
    from pyarrow import fs

    s3 = fs.S3FileSystem(access_key=CREDENTIALS["AWS_ACCESS_KEY_ID"], secret_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
                         region="us-east-1", endpoint_override=endpoint, scheme="http")
    local = fs.LocalFileSystem()
    t0 = time.perf_counter()
    fs.copy_files(str(segments), f"{bucket}/segments", source_filesystem=local, destination_filesystem=s3)
    t1 = time.perf_counter()
    fs.copy_files(f"{bucket}/segments", str(down), source_filesystem=s3, destination_filesystem=local)
    t2 = time.perf_counter()
    return t1 - t0, t2 - t1


def run(mb: int, rounds: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp, moto_server() as endpoint:
        tmp = Path(tmp)
        env = {**os.environ, "CHRONICLE_ROOT": str(tmp / "a")}
        subprocess.run([sys.executable, "-m", "chronicle", "init"], env=env, check=True, capture_output=True)
        size = make_log(tmp / "a" / "data" / "log", mb)
        push, pull, up, down = [], [], [], []
        for r in range(rounds):
            target = tmp / f"b{r}"
            subprocess.run([sys.executable, "-m", "chronicle", "init"], env={**env, "CHRONICLE_ROOT": str(target)},
                           check=True, capture_output=True)
            p, q = chronicle_round(tmp / "a", target, endpoint, new_bucket(endpoint))
            push.append(p)
            pull.append(q)
            (tmp / f"down{r}").mkdir()
            u, d = bare_round(tmp / "a" / "data" / "log" / "segments", tmp / f"down{r}", endpoint, new_bucket(endpoint))
            up.append(u)
            down.append(d)
        m = statistics.median
        return {"mb": size / 1e6, "rounds": rounds, "push_s": m(push), "pull_s": m(pull), "bare_up_s": m(up),
                "bare_down_s": m(down), "push_ratio": m(up) / m(push), "pull_ratio": m(down) / m(pull)}


def report(r: dict) -> None:
    print(f"{'push to S3 (moto), ' + format(r['mb'], ',.0f') + ' MB':<34} {r['push_s']:>10.2f} s   "
          f"{r['mb'] / r['push_s']:>7,.0f} MB/s  {r['push_ratio']:5.2f}x the throughput of pyarrow.fs copy_files "
          f"({r['bare_up_s']:.2f} s)")
    print(f"{'pull from S3 (moto)':<34} {r['pull_s']:>10.2f} s   {r['mb'] / r['pull_s']:>7,.0f} MB/s  "
          f"{r['pull_ratio']:5.2f}x the throughput of pyarrow.fs copy_files ({r['bare_down_s']:.2f} s)")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=int, default=1024)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    report(run(a.mb, a.rounds))
