"""Ids as people type them: unique prefixes (what the tables show), DayDreaming's task ids."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from chronicle import id_lookup
from chronicle.errors import UsageError
from chronicle.store import EventLog

from conftest import run_cli
from experiment_helpers import chronicle, make_workspace
from test_report import EXAMPLES, _workspace


def test_a_unique_prefix_names_a_session_everywhere_an_id_is_taken(tmp_path: Path) -> None:
    projects, env = _workspace(tmp_path, EXAMPLES)
    ws = Path(env["CHRONICLE_ROOT"])
    full = "c0ffee00-1111-4000-8000-000000000009"
    line = json.dumps({"type": "user", "uuid": "c1", "sessionId": full, "cwd": "/tmp",
                       "timestamp": "2026-01-01T00:00:00.000Z", "message": {"role": "user", "content": "hi"}}) + "\n"
    (projects / "-home-ana-repo" / f"{full}.jsonl").write_text(line)
    run_cli("ingest", "sessions", str(projects), root=ws, check=True)
    whole = run_cli("history", "session", full, root=ws)
    short = run_cli("history", "session", full[:8], root=ws)  # the 8 characters the tables show
    assert whole.returncode == 0 and whole.stdout and short.stdout == whole.stdout
    ambiguous = run_cli("history", "session", "5e55a000", root=ws)
    assert ambiguous.returncode == 2 and b"starts 2 session ids" in ambiguous.stderr and b"give more" in ambiguous.stderr
    assert run_cli("history", "session", "zzz", root=ws).returncode == 2
    exported = run_cli("export", "session", full[:8], root=ws)
    assert exported.returncode == 0 and exported.stdout == line.encode()


def test_a_document_by_prefix_or_by_daydreamings_task_id(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path)
    assert chronicle("run", "demo", "--provider", "echo", root=ws).returncode == 0
    snap = EventLog(ws / "data" / "log").snapshot()
    prompts = snap.frame("llm.prompt", ["doc_id", "task_id"]).collect()
    doc, task = prompts.row(0)
    assert id_lookup.doc_id(snap, doc) == doc
    assert id_lookup.doc_id(snap, task) == doc, "the task's latest (here only) attempt"
    unique = next(doc[:n] for n in range(4, len(doc) + 1) if prompts.filter(pl.col("doc_id").str.starts_with(doc[:n])).height == 1)
    assert id_lookup.doc_id(snap, unique) == doc
    with pytest.raises(UsageError, match="give more of it"):
        id_lookup.doc_id(snap, doc[:1])
    by_prefix = chronicle("audit", "prompt", unique, "--json", root=ws)
    assert by_prefix.returncode == 0 and json.loads(by_prefix.stdout)["doc_id"] == doc
    by_task = chronicle("history", "doc", task, root=ws)
    assert by_task.returncode == 0 and doc in by_task.stdout
