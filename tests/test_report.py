"""`chronicle report`: ccusage's reports in one command that reads new transcript bytes first."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, SHARED
from test_sessions import REFERENCE

EXAMPLES = ROOT / "data" / "examples" / "claude-projects"
REAL = SHARED / "corpus" / "claude-code" / "claude-code-log" / "test" / "test_data" / "real_projects"


def _workspace(tmp_path: Path, projects: Path) -> tuple[Path, dict[str, str]]:
    """A workspace whose Claude Code folder ($CLAUDE_CONFIG_DIR) is a copy of ``projects``."""
    config = tmp_path / "claude"
    shutil.copytree(projects, config / "projects")
    ws = tmp_path / "ws"
    env = {**os.environ, "CHRONICLE_ROOT": str(ws), "CLAUDE_CONFIG_DIR": str(config), "HOME": str(tmp_path / "home")}
    subprocess.run([sys.executable, "-m", "chronicle", "init"], env=env, check=True, capture_output=True)
    return config / "projects", env


def report(env: dict[str, str], *args: str) -> list[dict]:
    proc = subprocess.run([sys.executable, "-m", "chronicle", "report", *args, "--json"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return [json.loads(line) for line in proc.stdout.splitlines()]


def _assistant_line(uuid: str, when: str, model: str = "claude-sonnet-4-5-20250929", output: int = 7) -> str:
    return json.dumps({"type": "assistant", "uuid": uuid, "sessionId": "5e55a000-0000-4000-8000-000000000002",
                       "cwd": "/home/ana/repo", "timestamp": when, "requestId": f"req_{uuid}",
                       "message": {"id": f"msg_{uuid}", "model": model, "role": "assistant",
                                   "content": [{"type": "text", "text": "ok"}],
                                   "usage": {"input_tokens": 3, "output_tokens": output,
                                             "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}}}) + "\n"


def test_a_report_reads_new_transcript_bytes_first_unless_told_not_to(tmp_path: Path) -> None:
    projects, env = _workspace(tmp_path, EXAMPLES)
    before = report(env, "daily", "--timezone", "UTC")
    assert before and all(r["calls"] > 0 for r in before)
    session = projects / "-home-ana-repo" / "5e55a000-0000-4000-8000-000000000002.jsonl"
    with open(session, "a") as fh:
        fh.write(_assistant_line("new1", "2026-11-20T10:00:00.000Z", output=1000))
    after = report(env, "daily", "--timezone", "UTC")  # no `ingest` in between
    day = {r["date"]: r for r in after}["2026-11-20"]
    assert day["calls"] == 1 and day["output_tokens"] == 1000 and day["models"] == ["claude-sonnet-4-5-20250929"]
    with open(session, "a") as fh:
        fh.write(_assistant_line("new2", "2026-11-21T10:00:00.000Z"))
    assert "2026-11-21" not in {r["date"] for r in report(env, "daily", "--timezone", "UTC", "--no-ingest")}
    assert "2026-11-21" in {r["date"] for r in report(env, "daily", "--timezone", "UTC")}


def test_days_weeks_months_and_sessions_follow_the_time_zone(tmp_path: Path) -> None:
    projects, env = _workspace(tmp_path, EXAMPLES)
    session = projects / "-home-ana-repo" / "5e55a000-0000-4000-8000-000000000002.jsonl"
    with open(session, "a") as fh:  # Saturday 2026-11-28, 23:30 UTC: Sunday the 29th in Tokyo
        fh.write(_assistant_line("late", "2026-11-28T23:30:00.000Z", model="claude-sonnet-4-6", output=500))
    utc = {r["date"]: r for r in report(env, "daily", "--timezone", "UTC", "--since", "2026-11-28")}
    tokyo = {r["date"]: r for r in report(env, "daily", "--timezone", "Asia/Tokyo", "--since", "2026-11-28")}
    assert list(utc) == ["2026-11-28"] and list(tokyo) == ["2026-11-29"]
    weeks = {r["week"]: r for r in report(env, "weekly", "--timezone", "Asia/Tokyo", "--since", "2026-11-28")}
    assert list(weeks) == ["2026-11-29"], "a Sunday starts a week (ccusage's default)"
    mondays = report(env, "weekly", "--timezone", "UTC", "--since", "2026-11-28", "--start-of-week", "monday")
    assert [r["week"] for r in mondays] == ["2026-11-23"]
    assert [r["month"] for r in report(env, "monthly", "--timezone", "UTC", "--since", "2026-11-01")] == ["2026-11"]
    sessions = report(env, "session", "--timezone", "UTC", "--model", "sonnet-4-6")
    assert [(s["session_id"], s["calls"], s["output_tokens"]) for s in sessions] == [
        ("5e55a000-0000-4000-8000-000000000002", 1, 500)]
    broken = report(env, "daily", "--timezone", "UTC", "--breakdown", "--until", "2026-11-28", "--since", "2026-11-28")
    assert [(r["model"], r["calls"]) for r in broken] == [("claude-sonnet-4-6", 1)]
    assert broken[0]["cost_usd"] == pytest.approx(3 * 3e-6 + 500 * 15e-6)
    assert report(env, "daily", "--project", "no-such-project") == []


@pytest.mark.parametrize("args, says", [
    (["daily", "--timezone", "Mars/Olympus_Mons"], "--timezone: unknown time zone 'Mars/Olympus_Mons'"),
    (["daily", "--since", "last tuesday"], "--since: 'last tuesday' is not a day"),
    (["fortnightly"], "invalid choice: 'fortnightly'"),
])
def test_bad_arguments_get_one_line_and_exit_2(tmp_path: Path, args: list[str], says: str) -> None:
    _, env = _workspace(tmp_path, EXAMPLES)
    proc = subprocess.run([sys.executable, "-m", "chronicle", "report", *args], env=env, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2 and says in proc.stderr and "Traceback" not in proc.stderr


corpus = pytest.mark.skipif(not REAL.is_dir(), reason="../shared/corpus is not present (a fresh clone)")
CCUSAGE = os.environ.get("CCUSAGE") or shutil.which("ccusage")
with_ccusage = pytest.mark.skipif(not (REAL.is_dir() and CCUSAGE), reason="ccusage is not installed (npm install "
                                  "ccusage@20.0.24, or set CCUSAGE), or ../shared/corpus is absent")


def ccusage(env: dict[str, str], *args: str) -> dict:
    return json.loads(subprocess.run([CCUSAGE or "ccusage", *args, "--json", "--offline"], env=env, capture_output=True,
                                     text=True, check=True, timeout=120).stdout)


@corpus
def test_on_the_real_corpus_the_tokens_equal_the_reference_totals(tmp_path: Path) -> None:
    _, env = _workspace(tmp_path, REAL)
    rows = report(env, "daily", "--timezone", "UTC", "--breakdown")
    got: dict[str, list[int]] = {}
    for r in rows:
        totals = got.setdefault(r["model"], [0] * 5)
        for i, c in enumerate(("calls", "input_tokens", "output_tokens", "cache_creation_input_tokens",
                               "cache_read_input_tokens")):
            totals[i] += r[c]
    assert {m: tuple(v) for m, v in got.items()} == REFERENCE


@with_ccusage
def test_on_the_real_corpus_every_day_equals_ccusage(tmp_path: Path) -> None:
    _, env = _workspace(tmp_path, REAL)
    theirs = ccusage(env, "daily", "--timezone", "UTC")["daily"]
    ours = {r["date"]: r for r in report(env, "daily", "--timezone", "UTC")}
    assert sorted(ours) == sorted(d["period"] for d in theirs)
    for d in theirs:
        o = ours[d["period"]]
        assert (o["input_tokens"], o["output_tokens"], o["cache_creation_input_tokens"], o["cache_read_input_tokens"]) == (
            d["inputTokens"], d["outputTokens"], d["cacheCreationTokens"], d["cacheReadTokens"]), d["period"]
        assert o["cost_usd"] == pytest.approx(d["totalCost"], abs=1e-6), d["period"]


def test_blocks_cut_five_hour_windows_and_the_active_one_has_a_burn_rate(tmp_path: Path) -> None:
    from datetime import datetime, timedelta, timezone

    projects, env = _workspace(tmp_path, EXAMPLES)
    now = datetime.now(timezone.utc)
    stamp = lambda t: t.strftime("%Y-%m-%dT%H:%M:%S.000Z")  # noqa: E731
    with open(projects / "-home-ana-repo" / "5e55a000-0000-4000-8000-000000000002.jsonl", "a") as fh:
        b1 = (now - timedelta(days=3)).replace(minute=30, second=0)
        fh.write(_assistant_line("b1", stamp(b1), output=100))
        fh.write(_assistant_line("b2", stamp(b1 + timedelta(hours=4, minutes=45)), output=10))
        fh.write(_assistant_line("b3", stamp(now - timedelta(minutes=20)), output=3000))
    blocks = report(env, "blocks", "--timezone", "UTC", "--since", (now - timedelta(days=4)).date().isoformat())
    real = [b for b in blocks if not b["is_gap"]]
    gaps = [b for b in blocks if b["is_gap"]]
    # b1 -> b2 is 4h45m: no gap between their blocks (a gap is 5 idle hours), but b2 is 5h15m after b1's hour
    assert len(real) == 3 and len(gaps) == 1, [(b["start"], b["is_gap"]) for b in blocks]
    first, second, active = real
    assert first["output_tokens"] == 100, "a call 5 hours or more after its block's start begins the next block"
    assert second["output_tokens"] == 10
    assert active["is_active"] and not first["is_active"]
    assert active["burn_tokens_per_minute"] > 0 and active["projected_total_tokens"] >= active["total_tokens"]
    assert all(g["total_tokens"] == 0 and g["calls"] == 0 for g in gaps)
    assert first["start"].endswith(":00:00+00:00"), "a block starts on the hour"


@with_ccusage
def test_on_the_real_corpus_blocks_equal_ccusages(tmp_path: Path) -> None:
    _, env = _workspace(tmp_path, REAL)
    theirs = ccusage(env, "blocks")["blocks"]
    ours = report(env, "blocks", "--timezone", "UTC")
    assert [b["is_gap"] for b in ours] == [b["isGap"] for b in theirs]
    for o, t in zip(ours, theirs):
        if o["is_gap"]:
            continue
        assert o["start"].replace(" ", "T").replace("+00:00", "") == t["startTime"].replace(".000Z", "")
        counts = t["tokenCounts"]
        assert (o["input_tokens"], o["output_tokens"], o["cache_creation_input_tokens"], o["cache_read_input_tokens"]) == (
            counts["inputTokens"], counts["outputTokens"], counts["cacheCreationInputTokens"], counts["cacheReadInputTokens"])
        assert o["cost_usd"] == pytest.approx(t["costUSD"], abs=1e-6)
