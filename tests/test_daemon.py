"""`chronicle watch` as a real process: files change under it, it is SIGKILLed and restarted,
and the tables it leaves equal a one-shot ingest of the final files."""

from __future__ import annotations

import json
import re
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
from chronicle.projection import Engine, discover, read_tables
from chronicle.store import EventLog
from chronicle.workspace import Workspace

from conftest import ROOT, run_cli
from daemon_helpers import Daemon

EXAMPLES = ROOT / "data" / "examples" / "claude-projects"
EXPERIMENT = ROOT / "data" / "examples" / "experiment"
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


def tables(ws: Path) -> dict[str, pl.DataFrame]:
    """The tables without seq columns, rows in a canonical order (log order differs
    between a daemon that saw the files change and a one-shot ingest)."""
    out = {}
    for name in TABLES:
        df = read_tables(ws / "data" / "tables", [name])[0][name]
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
        return path.exists() and read_tables(path.parent, [path.stem])[0][path.stem].filter(pl.col("session_id") == "live").height == 1
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


NICENESS = """
import os
import polars as pl
INPUTS = ["session.line"]
OUTPUTS = ["niceness"]
def build(inputs):
    return {"niceness": pl.DataFrame({"nice": [os.nice(0)]})}
"""


def test_slow_rebuilds_run_at_background_priority(setup) -> None:
    # A new line must not wait behind a full rebuild: the slow projections' child runs niced.
    projects, ws, d = setup
    (ws / "mine").mkdir()
    (ws / "mine" / "niceness.py").write_text(NICENESS)
    config = ws / "chronicle.toml"
    config.write_text(config.read_text().replace("slow_projection_seconds", 'slow_projections = ["niceness"]\n'
                                                 "slow_projection_seconds") + '[projections]\npaths = ["mine"]\n')
    d.start()
    table = ws / "data" / "tables" / "niceness.parquet"
    d.wait_for(lambda _state: table.exists())
    assert read_tables(table.parent, [table.stem])[0][table.stem]["nice"].to_list() == [min(19, os.nice(0) + 10)]


def _cohort_events(ws: Path) -> pl.DataFrame:
    snap = EventLog(ws / "data" / "log").snapshot()
    if "cohort.defined" not in snap.types():
        return pl.DataFrame(schema={"seq": pl.Int64, "cohort_id": pl.String, "membership_json": pl.String})
    return snap.frame("cohort.defined", ["seq", "cohort_id", "membership_json"]).sort("seq").collect()


def _definition_paths(ws: Path) -> list[str]:
    snap = EventLog(ws / "data" / "log").snapshot()
    return snap.frame("definitions.snapshot", ["path"]).collect()["path"].to_list()


def test_daemon_records_definitions_and_replans_cohorts_as_they_change(setup) -> None:
    """data/1_raw and data/cohorts are watched: a changed definition is recorded and every
    cohort re-planned; a changed spec re-plans its cohort; a broken spec is logged, not fatal;
    a run writes to the same log meanwhile."""
    _projects, ws, d = setup
    make_workspace_files(ws)
    d.start()
    d.wait_for(lambda _s: _cohort_events(ws).height == 1)
    first = json.loads(_cohort_events(ws)["membership_json"][0])
    recorded_before = len(_definition_paths(ws))
    assert recorded_before == len([p for p in (ws / "data" / "1_raw").rglob("*") if p.is_file()])

    # A spec edit: one fewer judge template means a smaller membership, recorded once.
    spec = ws / "data" / "cohorts" / "demo" / "cohort.toml"
    spec.write_text(spec.read_text().replace('templates = ["novelty-judge-v1", "legacy-last-line"]',
                                             'templates = ["novelty-judge-v1"]'))
    d.wait_for(lambda _s: _cohort_events(ws).height == 2)
    second = json.loads(_cohort_events(ws)["membership_json"][1])
    assert len(second) < len(first)

    # A definition edit: a concept's description changes every document that uses it.
    concept = ws / "data" / "1_raw" / "concepts" / "descriptions-paragraph" / "data-flywheel.txt"
    concept.write_text(concept.read_text() + "\nA further sentence.\n")
    d.wait_for(lambda _s: _cohort_events(ws).height == 3)
    assert _definition_paths(ws).count("concepts/descriptions-paragraph/data-flywheel.txt") == 2
    assert len(_definition_paths(ws)) == recorded_before + 1

    # A broken spec in a new cohort is logged; the daemon lives on and the good cohort is untouched.
    (ws / "data" / "cohorts" / "broken").mkdir()
    (ws / "data" / "cohorts" / "broken" / "cohort.toml").write_text("[draft\ntemplates = \n")
    log_file = ws / "data" / "logs" / "watch.log"
    d.wait_for(lambda _s: "broken/cohort.toml" in log_file.read_text())
    assert d.proc.poll() is None and _cohort_events(ws).height == 3

    # A run appends while the daemon watches; its run lock file sends no spurious plan.
    env = {**os.environ, "CHRONICLE_ROOT": str(ws)}
    run = subprocess.run([sys.executable, "-m", "chronicle", "run", "demo", "--provider", "echo", "--stage", "draft"],
                         env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    (ws / "data" / "cohorts" / "broken" / "cohort.toml").unlink()
    d.caught_up(ws)
    status = json.loads(run_cli("status", "--json", root=ws, check=True).stdout)
    experiment_roots = [r for r in status["roots"] if "files_behind" in r]
    assert [Path(r["root"]).name for r in experiment_roots] == ["1_raw", "cohorts"]
    assert all(r["exists"] and r["files_behind"] == 0 for r in experiment_roots)
    assert _cohort_events(ws).height == 3
    d.proc.send_signal(signal.SIGTERM)
    assert d.proc.wait(timeout=30) == 0


def make_workspace_files(ws: Path) -> None:
    shutil.copytree(EXPERIMENT / "1_raw", ws / "data" / "1_raw", dirs_exist_ok=True)
    shutil.copytree(EXPERIMENT / "cohorts", ws / "data" / "cohorts", dirs_exist_ok=True)


def test_watch_says_each_pass_in_one_line_on_the_terminal_too(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    projects = tmp_path / "claude"
    shutil.copytree(ROOT / "data" / "examples" / "claude-projects", projects)
    Workspace.at(ws).init()
    (ws / "chronicle.toml").write_text(f'[watch]\nclaude_roots = ["{projects}"]\ngit_repos = []\n')
    proc = subprocess.run([sys.executable, "-m", "chronicle", "watch", "--once"], capture_output=True, text=True,
                          env={**os.environ, "CHRONICLE_ROOT": str(ws)}, timeout=120)
    assert proc.returncode == 0, proc.stderr
    passes = [line for line in proc.stderr.splitlines() if " pass: " in line]
    assert len(passes) == 1 and re.match(r"\d\d:\d\d:\d\d pass: 4 files, \d+ new lines, .* MB, 0 rewritten", passes[0])
    logged = [json.loads(line) for line in (ws / "data" / "logs" / "watch.log").read_text().splitlines()]
    assert [e for e in logged if e["event"] == "pass"][0]["files"] == 4, "and in the JSON log"
