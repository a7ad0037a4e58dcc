"""Codex CLI sessions, the second transcript source: found by content beside Claude
Code's, kept byte for byte, and counted by the rule (and to the totals) of
``../shared/corpus/codex/NOTES.md``, side by side with ``ccusage codex``."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest

from chronicle.ingest.sessions import SessionIngester
from chronicle.ingest.sources import SOURCES, discover
from chronicle.projection import Engine, discover as projections, read_tables
from chronicle.store import EventLog

from conftest import ROOT, SHARED

CORPUS = SHARED / "corpus" / "codex"
EXAMPLE = ROOT / "data" / "examples" / "codex-sessions"
CLAUDE_EXAMPLES = ROOT / "data" / "examples" / "claude-projects"
needs_corpus = pytest.mark.skipif(not CORPUS.is_dir(), reason="the shared corpus is absent (a fresh clone)")


def chronicle(env: dict[str, str], *args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "chronicle", *args], env=env, capture_output=True, timeout=120)
    if check:
        assert proc.returncode == 0, proc.stderr.decode()
    return proc


def workspace(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {**os.environ, "CHRONICLE_ROOT": str(tmp_path / "ws"), "HOME": str(tmp_path / "home"), **extra}
    env.pop("CODEX_HOME", None) if "CODEX_HOME" not in extra else None
    env.pop("CLAUDE_CONFIG_DIR", None) if "CLAUDE_CONFIG_DIR" not in extra else None
    chronicle(env, "init")
    return env


def calls(env: dict[str, str]) -> pl.DataFrame:
    chronicle(env, "rebuild", "usage")
    return pl.read_parquet(Path(env["CHRONICLE_ROOT"]) / "data" / "tables" / "api_calls.parquet")


def by_model(table: pl.DataFrame) -> dict[str, dict[str, int]]:
    sums = (table.filter(pl.col("agent") == "codex").group_by("model")
            .agg(pl.len().alias("calls"), (pl.col("input_tokens") + pl.col("cache_read_input_tokens")).sum().alias("input"),
                 pl.col("cache_read_input_tokens").sum().alias("cached"), pl.col("output_tokens").sum().alias("output"),
                 pl.col("reasoning_output_tokens").sum().alias("reasoning"), pl.col("total_tokens").sum().alias("total")))
    return {r.pop("model"): r for r in sums.to_dicts()}


def notes_reference() -> dict[str, dict[str, int]]:
    """The per-model table of the corpus NOTES ("Reference totals"), as the NOTES print it."""
    text = (CORPUS / "NOTES.md").read_text()
    table = text[text.index("| model | calls |"):].split("\n\n")[0].splitlines()[2:]
    out = {}
    for row in table:
        cells = [c.strip().strip("*") for c in row.strip("|").split("|")]
        if cells[0] == "all":
            continue
        n = [int(c.replace(",", "")) for c in cells[1:]]
        out[cells[0]] = dict(zip(["calls", "input", "cached", "output", "reasoning", "total"], n))
    return out


# ------------------------------------------------------------------ found by content


def test_a_rollout_is_found_by_its_first_record_whatever_its_name(tmp_path: Path) -> None:
    rollout = next(EXAMPLE.rglob("*.jsonl"))
    mixed = tmp_path / "mixed"
    shutil.copytree(CLAUDE_EXAMPLES, mixed / "claude")
    (mixed / "copied").mkdir()
    shutil.copy(rollout, mixed / "copied" / "transcript.jsonl")  # a copied fixture keeps no rollout name
    kinds = {f.path.name: f.kind for f in discover([mixed])}
    assert kinds["transcript.jsonl"] == "codex-rollout"
    assert {k for n, k in kinds.items() if n != "transcript.jsonl"} >= {"session", "subagent", "agent-meta"}
    # a known file keeps the kind the log recorded: its first line is not read again
    assert {f.kind for f in discover([mixed / "copied"], {str((mixed / "copied" / "transcript.jsonl").resolve()): "x"})} == {"x"}


def test_a_file_recorded_before_its_first_line_was_written_is_read_by_the_right_source(tmp_path: Path) -> None:
    first = next(EXAMPLE.rglob("*.jsonl")).read_bytes().split(b"\n")[0]
    f = tmp_path / "src" / "rollout-new.jsonl"
    f.parent.mkdir()
    with EventLog.init(tmp_path / "log") as log:
        ingester = SessionIngester(log, tmp_path / "ingest.lock", quiet_seconds=3600)
        for data in (b"", first[:40], first + b"\n"):  # Codex is still writing its session_meta
            f.write_bytes(data)
            ingester.run([tmp_path / "src"])
        snap = log.snapshot()
        seen = snap.frame("source.seen", ["generation", "kind"]).collect().rows()
        rewrites = snap.frame("source.rewritten", ["reason"]).collect()["reason"].to_list()
        lines = snap.frame("codex.line", ["generation", "record_type"]).collect().rows()
    assert seen == [(0, "session"), (1, "codex-rollout")]  # empty: taken for Claude's, as any empty .jsonl
    assert rewrites == ["its first record shows a codex-rollout file (recorded as session before any line was)"]
    assert lines == [(1, "session_meta")]


def test_report_agents_name_every_source() -> None:
    from chronicle.commands.report import AGENTS

    assert set(AGENTS) == {s.agent for s in SOURCES}


# ------------------------------------------------------------------ the shipped example


def test_the_example_rollout_is_counted_by_the_rule_and_kept_byte_for_byte(tmp_path: Path) -> None:
    env = workspace(tmp_path)
    proc = chronicle(env, "ingest", "sessions", str(EXAMPLE), str(CLAUDE_EXAMPLES), "--json")
    summary = json.loads(proc.stdout)
    assert summary["errors"] == 1 and "invalid JSON" in summary["problems"][0]  # the line cut off mid-write
    assert re.search(r"rollout-.*\.jsonl:22: invalid JSON", summary["problems"][0])
    table = calls(env)
    assert set(table["agent"]) == {"claude-code", "codex"}
    # every snapshot written twice, an info-null one, compaction and a token_usage_record: 3 calls
    assert by_model(table) == {
        "gpt-5.3-codex": {"calls": 2, "input": 25500, "cached": 14904, "output": 720, "reasoning": 300, "total": 26220},
        "gpt-5.4": {"calls": 1, "input": 9000, "cached": 8000, "output": 150, "reasoning": 50, "total": 9150},
    }
    codex = table.filter(pl.col("agent") == "codex")
    assert set(codex["session_id"]) == {"019c9000-0000-7000-8000-00000000c0de"}
    assert set(codex["project"]) == {"/home/ada/src/chronicle"}
    daily = pl.read_parquet(Path(env["CHRONICLE_ROOT"]) / "data" / "tables" / "usage_daily.parquet")
    assert {(r["agent"], r["model"]) for r in daily.iter_rows(named=True)} >= {("codex", "gpt-5.4"), ("codex", "gpt-5.3-codex")}
    errors = [json.loads(x) for x in chronicle(env, "show", "ingest_errors", "--json").stdout.splitlines()]
    assert [(e["type"], e["line_no"]) for e in errors] == [("codex.line", 22)]
    # byte for byte, by a prefix of the session id, and as a tree
    rollout = next(EXAMPLE.rglob("*.jsonl"))
    assert chronicle(env, "export", "session", "019c9000").stdout == rollout.read_bytes()
    out = tmp_path / "restored"
    chronicle(env, "export", "sessions", str(out))
    assert (out / rollout.relative_to(EXAMPLE)).read_bytes() == rollout.read_bytes()
    history = chronicle(env, "history", "session", "019c9000").stdout.decode()
    assert "23 lines in 1 files" in history
    # the report of one agent, and of both
    only = [json.loads(x) for x in chronicle(env, "report", "daily", "--agent", "codex", "--no-ingest", "--json",
                                             "--timezone", "UTC").stdout.splitlines()]
    assert [(r["date"], r["calls"], r["total_tokens"]) for r in only] == [("2026-03-02", 3, 35370)]
    both = chronicle(env, "report", "daily", "--no-ingest", "--json", "--timezone", "UTC").stdout.splitlines()
    assert len(both) > len(only)


def test_a_rollout_read_while_it_grows_counts_the_same_as_read_whole(tmp_path: Path) -> None:
    rollout = next(EXAMPLE.rglob("*.jsonl"))
    data = rollout.read_bytes()
    live = tmp_path / "sessions" / "2026" / "03" / "02" / rollout.name
    live.parent.mkdir(parents=True)
    with EventLog.init(tmp_path / "log") as log:
        ingester = SessionIngester(log, tmp_path / "ingest.lock", quiet_seconds=3600)
        engine = Engine(tmp_path / "tables", projections())
        for cut in (0, 600, 601, 1800, 3000, len(data) - 7, len(data)):  # mid-line cuts, the first line's included
            live.write_bytes(data[:cut])
            old = time.time() - 60  # not fresh: an empty file is recorded at once
            os.utime(live, (old, old)) if cut == 0 else None
            ingester.run([tmp_path / "sessions"])
            engine.run(log.snapshot(), ["usage"])
        grown = read_tables(tmp_path / "tables", ["api_calls"])[0]["api_calls"]
        Engine(tmp_path / "full", projections()).run(log.snapshot(), ["usage"], full=True)
        whole = read_tables(tmp_path / "full", ["api_calls"])[0]["api_calls"]
    assert grown.equals(whole) and grown["total_tokens"].sum() == 35370


def test_watch_reads_codex_home_sessions(tmp_path: Path) -> None:
    codex_home = tmp_path / "codex"
    shutil.copytree(EXAMPLE, codex_home / "sessions")
    env = workspace(tmp_path, CODEX_HOME=str(codex_home))
    chronicle(env, "watch", "--once")
    status = json.loads(chronicle(env, "status", "--json").stdout)
    root = next(r for r in status["roots"] if r["root"] == str(codex_home / "sessions"))
    assert root["exists"] and root["files"] == 1 and root["bytes_behind"] == 0
    assert by_model(calls(env))["gpt-5.4"]["calls"] == 1


# ------------------------------------------------------------------ the real corpus


@needs_corpus
def test_the_real_rollouts_equal_the_reference_totals_and_export_byte_for_byte(tmp_path: Path) -> None:
    env = workspace(tmp_path)
    summary = json.loads(chronicle(env, "ingest", "sessions", str(CORPUS), "--json").stdout)
    assert summary["lines"] == 5128 and summary["errors"] == 0
    assert by_model(calls(env)) == notes_reference()
    out = tmp_path / "restored"
    chronicle(env, "export", "sessions", str(out))
    for f in CORPUS.rglob("*.jsonl"):
        assert (out / f.relative_to(CORPUS)).read_bytes() == f.read_bytes(), f


@needs_corpus
@pytest.mark.skipif(not os.environ.get("CCUSAGE"), reason="ccusage is not installed (CCUSAGE names its binary)")
def test_the_codex_report_equals_ccusage_codex_daily(tmp_path: Path) -> None:
    codex_home = tmp_path / "codex"
    (codex_home / "sessions").mkdir(parents=True)
    for f in CORPUS.rglob("*.jsonl"):
        shutil.copy(f, codex_home / "sessions" / f.name)
    env = workspace(tmp_path, CODEX_HOME=str(codex_home), TZ="UTC")
    peer = subprocess.run([os.environ["CCUSAGE"], "codex", "daily", "--json", "--offline"], env=env,
                          capture_output=True, text=True, timeout=300, check=True)
    theirs = {d["date"]: (d["inputTokens"], d["cacheReadTokens"], d["outputTokens"], d["totalTokens"])
              for d in json.loads(peer.stdout)["daily"]}
    ours = {r["date"]: (r["input_tokens"], r["cache_read_input_tokens"], r["output_tokens"], r["total_tokens"])
            for r in map(json.loads, chronicle(env, "report", "daily", "--agent", "codex", "--json",
                                               "--timezone", "UTC").stdout.splitlines())}
    assert ours == theirs and len(ours) == 6
