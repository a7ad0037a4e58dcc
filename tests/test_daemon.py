"""`chronicle watch` as a real process: files change under it, it is SIGKILLed and restarted,
and the tables it leaves equal a one-shot ingest of the final files."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest

from chronicle.ingest.sessions import SessionIngester
from chronicle.projection import Engine, discover
from chronicle.workspace import Workspace

from conftest import ROOT, run_cli

EXAMPLES = ROOT / "data" / "examples" / "claude-projects"
TABLES = ["sessions", "messages", "api_calls", "usage_daily", "tool_calls", "subagents", "episodes"]


def record(sid: str, uuid: str, text: str) -> bytes:
    return json.dumps({"type": "user", "sessionId": sid, "uuid": uuid, "cwd": "/w", "timestamp": "2026-03-04T10:00:00Z",
                       "message": {"role": "user", "content": text}}).encode() + b"\n"


def call(sid: str, uuid: str, mid: str, tokens: int) -> bytes:
    return json.dumps({"type": "assistant", "sessionId": sid, "uuid": uuid, "cwd": "/w", "requestId": f"r{mid}",
                       "timestamp": "2026-03-04T10:00:01Z", "message": {
                           "id": mid, "role": "assistant", "model": "claude-haiku-4-5-20251001",
                           "content": [{"type": "text", "text": "ok"}],
                           "usage": {"input_tokens": tokens, "output_tokens": 1}}}).encode() + b"\n"


class Daemon:
    def __init__(self, ws: Path):
        self.ws = ws
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        env = {**os.environ, "CHRONICLE_ROOT": str(self.ws)}
        self.proc = subprocess.Popen([sys.executable, "-m", "chronicle", "watch"], env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.wait_for(lambda s: s.get("pid") == self.proc.pid and s.get("passes", 0) >= 1)

    def state(self) -> dict:
        try:
            return json.loads((self.ws / "data" / "watch.json").read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return {}

    def wait_for(self, ok, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is None or self.proc.poll() is None, self.proc.stderr.read().decode()
            if ok(self.state()):
                return
            time.sleep(0.05)
        raise AssertionError(f"daemon did not get there in {timeout}s: {self.state()}")

    def caught_up(self, projects: Path) -> None:
        """Wait until status reports nothing left to ingest and the tables are at the head."""
        def done(_state: dict) -> bool:
            out = run_cli("status", "--json", root=self.ws)
            if out.returncode != 0:
                return False
            st = json.loads(out.stdout)
            return (all(r["bytes_behind"] == 0 for r in st["roots"])
                    and st["projections"] and all(p["behind"] == 0 for p in st["projections"]))
        self.wait_for(done)


def tables(ws: Path) -> dict[str, pl.DataFrame]:
    """The tables without seq columns, rows in a canonical order (log order differs
    between a daemon that saw the files change and a one-shot ingest)."""
    out = {}
    for name in TABLES:
        df = pl.read_parquet(ws / "data" / "tables" / f"{name}.parquet")
        df = df.drop([c for c in df.columns if c.endswith("seq")])
        keys = [c for c, t in df.schema.items() if not isinstance(t, (pl.List, pl.Struct))]
        out[name] = df.sort(keys, nulls_last=True)
    return out


@pytest.fixture
def setup(tmp_path: Path):
    projects = tmp_path / "projects"
    shutil.copytree(EXAMPLES, projects)
    ws = tmp_path / "ws"
    Workspace.at(ws).init()
    (ws / "chronicle.toml").write_text(
        f'[watch]\nclaude_roots = ["{projects}"]\ndebounce_ms = 50\nseal_mb = 0.01\n'
        'slow_projection_seconds = 0.5\n')
    d = Daemon(ws)
    yield projects, ws, d
    if d.proc and d.proc.poll() is None:
        d.proc.kill()
        d.proc.wait()


def test_daemon_survives_changes_and_sigkill_and_matches_a_one_shot_ingest(setup, tmp_path: Path) -> None:
    projects, ws, d = setup
    d.start()
    proj = projects / "-home-ana-repo"
    live = proj / "live-session.jsonl"
    # lines appended, one of them in two writes (a partial line waits for its newline)
    live.write_bytes(record("live", "l1", "first") + call("live", "l2", "m1", 10))
    with open(live, "ab") as fh:
        fh.write(record("live", "l3", "second")[:20])

    def live_calls(_state: dict) -> bool:
        path = ws / "data" / "tables" / "api_calls.parquet"
        return path.exists() and pl.read_parquet(path).filter(pl.col("session_id") == "live").height == 1
    d.wait_for(live_calls)
    status = json.loads(run_cli("status", "--json", root=ws, check=True).stdout)
    assert status["roots"][0]["bytes_behind"] == 20  # the partial line waits for its newline
    with open(live, "ab") as fh:
        fh.write(record("live", "l3", "second")[20:])
    d.caught_up(projects)
    # a manual CLI command writes to the same log while the daemon runs
    note = b'{"type":"annotation","stream":"doc:x","event_id":"n1","target":"doc:x","key":"k","value":"v","author":"me"}\n'
    assert run_cli("append", root=ws, stdin=note).returncode == 0
    # SIGKILL in the middle of a burst, then restart
    for i in range(40):
        (proj / f"burst-{i}.jsonl").write_bytes(record(f"b{i}", f"b{i}-1", "hi") + call(f"b{i}", f"b{i}-2", f"mb{i}", i))
    time.sleep(0.15)
    d.proc.send_signal(signal.SIGKILL)
    d.proc.wait()
    d.start()
    d.caught_up(projects)
    # a renamed file, a truncated-and-rewritten file, a folder that appears later
    (proj / "burst-0.jsonl").rename(proj / "burst-0-renamed.jsonl")
    (proj / "burst-1.jsonl").write_bytes(record("b1", "b1-x", "rewritten shorter"))
    later = projects / "-home-ana-later"
    later.mkdir()
    (later / "later.jsonl").write_bytes(record("later", "t1", "hello") + call("later", "t2", "mt", 5))
    d.caught_up(projects)
    assert d.state()["problems"] == 0
    d.proc.send_signal(signal.SIGTERM)
    assert d.proc.wait(timeout=20) == 0
    log_lines = [json.loads(x) for x in (ws / "data" / "logs" / "watch.log").read_text().splitlines()]
    assert log_lines[-1]["event"] == "stopped" and any(x["event"] == "signal" for x in log_lines)
    assert run_cli("status", root=ws, check=True).stdout.startswith(b"daemon      not running")
    # the final tables equal a one-shot ingest of the final files
    once = Workspace.at(tmp_path / "once")
    once.init()
    SessionIngester(once.open_log(), once.data / "ingest.lock", quiet_seconds=0).run([projects])
    Engine(once.tables_dir, discover()).run(once.open_log().snapshot(), full=True)
    got, want = tables(ws), tables(once.root)
    for name in TABLES:
        assert got[name].equals(want[name]), name
    sessions = got["sessions"]["session_id"].to_list()
    assert "b0" in sessions and "later" in sessions and "live" in sessions
    lines = ws / "data" / "log"
    assert run_cli("verify", root=ws).returncode == 0, lines


def test_one_daemon_per_workspace_and_once(setup) -> None:
    projects, ws, d = setup
    once = run_cli("watch", "--once", root=ws, check=True)
    assert once.returncode == 0
    status = json.loads(run_cli("status", "--json", root=ws, check=True).stdout)
    assert status["running"] is False and status["passes"] == 1 and status["roots"][0]["bytes_behind"] == 0
    d.start()
    second = run_cli("watch", root=ws)
    assert second.returncode == 3 and b"already watches" in second.stderr
    status = json.loads(run_cli("status", "--json", root=ws, check=True).stdout)
    assert status["running"] is True and status["pid"] == d.proc.pid
