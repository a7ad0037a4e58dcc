"""`chronicle sql`: Polars SQL over every table and event type, tables brought current first."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from test_report import EXAMPLES, _assistant_line, _workspace


def sql(env: dict[str, str], query: str, *flags: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "chronicle", "sql", query, *flags], env=env, capture_output=True,
                          text=True, timeout=120)


def test_sql_reads_tables_current_event_types_and_the_envelope(tmp_path: Path) -> None:
    projects, env = _workspace(tmp_path, EXAMPLES)
    subprocess.run([sys.executable, "-m", "chronicle", "ingest", "sessions"], env=env, check=True, capture_output=True)
    head = json.loads(subprocess.run([sys.executable, "-m", "chronicle", "stats", "--json"], env=env,
                                     capture_output=True, text=True, check=True).stdout)["head_seq"]
    # never built before: a query brings the tables it names up to date
    by_model = sql(env, "SELECT model, count(*) AS calls FROM api_calls GROUP BY model ORDER BY model", "--json")
    assert by_model.returncode == 0, by_model.stderr
    rows = [json.loads(x) for x in by_model.stdout.splitlines()]
    shown = subprocess.run([sys.executable, "-m", "chronicle", "show", "api_calls", "--json", "--stale"], env=env,
                           capture_output=True, text=True, check=True).stdout.splitlines()
    expected: dict[str, int] = {}
    for line in shown:
        model = json.loads(line)["model"]
        expected[model] = expected.get(model, 0) + 1
    assert {r["model"]: r["calls"] for r in rows} == expected and len(expected) >= 2
    joined = sql(env, "SELECT s.session_id, count(*) AS n FROM messages m JOIN sessions s "
                      "ON m.session_id = s.session_id GROUP BY s.session_id ORDER BY n DESC", "--csv")
    assert joined.returncode == 0 and joined.stdout.startswith("session_id,n\n")
    envelope = [json.loads(x) for x in sql(env, "SELECT type, count(*) AS n FROM events GROUP BY type", "--json").stdout.splitlines()]
    assert sum(r["n"] for r in envelope) == head
    lines = sql(env, 'SELECT count(*) AS n FROM "session.line"', "--json")
    assert json.loads(lines.stdout)["n"] == next(r["n"] for r in envelope if r["type"] == "session.line")
    # what is recorded next is in the next query; with --stale the table stands as it was
    with open(projects / "-home-ana-repo" / "5e55a000-0000-4000-8000-000000000002.jsonl", "a") as fh:
        fh.write(_assistant_line("sql1", "2026-11-20T10:00:00.000Z"))
    subprocess.run([sys.executable, "-m", "chronicle", "ingest", "sessions"], env=env, check=True, capture_output=True)
    count = "SELECT count(*) AS n FROM api_calls"
    stale = json.loads(sql(env, count, "--json", "--stale").stdout)["n"]
    fresh = json.loads(sql(env, count, "--json").stdout)["n"]
    assert fresh == stale + 1
    assert "shape:" in sql(env, count).stdout, "a table for people"


def test_bad_sql_is_one_line_and_exit_2(tmp_path: Path) -> None:
    _, env = _workspace(tmp_path, EXAMPLES)
    for query, says in (("SELEC 1", "sql parser error"), ("SELECT * FROM nope", "relation 'nope' was not found"),
                        ("SELECT no_such_column FROM events", "no_such_column")):
        proc = sql(env, query)
        assert proc.returncode == 2, (query, proc.stderr)
        assert says in proc.stderr and len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    assert "tables: " in sql(env, "SELECT * FROM nope").stderr, "the error lists what there is"
