"""`make demo` runs `chronicle demo`: the whole loop works and re-running adds nothing."""

from __future__ import annotations

from pathlib import Path

from conftest import run_cli


def test_demo_runs_end_to_end_and_is_idempotent(tmp_path: Path) -> None:
    first = run_cli("demo", root=tmp_path, check=True).stdout.decode()
    assert "appended 5,008 new events" in first and "verify: ok" in first
    assert "invalid JSON" in first  # the example's bad transcript line reached ingest_errors
    assert "5 files (5 new" in first and "some-future-model-9" in first and "correct" in first
    assert "gpt-5.4" in first  # the Codex example's usage, beside Claude Code's
    second = run_cli("demo", root=tmp_path, check=True).stdout.decode()
    assert "appended 0 new events (5,008 already recorded)" in second and "0 lines" in second
    assert (tmp_path / "data" / "tables" / "events_by_type.csv").exists()
