"""`chronicle show`: columns, filters and sorting; for people it says what it left out."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from test_report import EXAMPLES, _workspace


def show(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "chronicle", "show", *args], env=env, capture_output=True, text=True,
                          timeout=120)


def test_columns_where_sort_and_limit(tmp_path: Path) -> None:
    _, env = _workspace(tmp_path, EXAMPLES)
    subprocess.run([sys.executable, "-m", "chronicle", "ingest", "sessions"], env=env, check=True, capture_output=True)
    every = [json.loads(x) for x in show(env, "api_calls", "--json").stdout.splitlines()]
    assert len(every) >= 5 and len(every[0]) > 10, "--json: every column of every row"
    rows = [json.loads(x) for x in show(env, "api_calls", "--json", "--columns", "model,output_tokens", "--where",
                                         "output_tokens > 5", "--sort", "output_tokens:desc,model").stdout.splitlines()]
    expected = sorted(({"model": r["model"], "output_tokens": r["output_tokens"]} for r in every if r["output_tokens"] > 5),
                      key=lambda r: (-r["output_tokens"], r["model"]))
    assert rows == expected and rows
    assert len(show(env, "api_calls", "--json", "--limit", "2").stdout.splitlines()) == 2
    assert show(env, "api_calls", "--json", "--limit", "0").stdout == ""
    csv = show(env, "usage_daily", "--csv", "--columns", "day,model").stdout.splitlines()
    assert csv[0] == "day,model" and len(csv) > 1


def test_for_people_it_fits_and_says_what_it_left_out(tmp_path: Path) -> None:
    _, env = _workspace(tmp_path, EXAMPLES)
    subprocess.run([sys.executable, "-m", "chronicle", "ingest", "sessions"], env=env, check=True, capture_output=True)
    total = len(show(env, "messages", "--json").stdout.splitlines())
    people = show(env, "messages", "--limit", "3").stdout.splitlines()
    assert people[-1].startswith(f"3 of {total} rows, 6 of ") and f"{total - 3} more rows" in people[-1]
    assert "more columns (--columns all)" in people[-1]
    assert "text" in people[1] and "parent_uuid" not in "".join(people), "the VIEW's columns, no others"
    wide = show(env, "messages", "--limit", "1", "--columns", "all").stdout.splitlines()
    assert "parent_uuid" in "".join(wide) and "more columns" not in wide[-1]
    sessions = show(env, "sessions").stdout
    assert "(untitled)" not in sessions and "title" in sessions
    assert "total_tokens" in sessions and "cost_usd" in sessions, "tokens and cost, from usage_by_session"
    assert "total_tokens" not in show(env, "sessions", "--json").stdout, "--json: the table's own columns"


def test_bad_options_name_the_column(tmp_path: Path) -> None:
    _, env = _workspace(tmp_path, EXAMPLES)
    for args, says in ((["--columns", "model,nope"], "--columns: no column 'nope'"),
                       (["--sort", "nope:desc"], "--sort: no column 'nope'"),
                       (["--where", "nope > 1"], "--where:"),
                       (["--limit", "-1"], "--limit must be 0 or more")):
        proc = show(env, "api_calls", *args)
        assert proc.returncode == 2 and says in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, (args, proc.stderr)
