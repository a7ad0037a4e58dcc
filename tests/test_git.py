"""Git ingest (a real repository) and commit <-> session links on a labelled sample."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import polars as pl
import pytest

from chronicle.ingest.git import ingest_git
from chronicle.ingest.sessions import SessionIngester
from chronicle.projection import Engine, discover
from chronicle.workspace import Workspace

from conftest import run_cli

A, B, C = ("a0000000-0000-4000-8000-00000000000a", "b0000000-0000-4000-8000-00000000000b",
           "c0000000-0000-4000-8000-00000000000c")


def git(repo: Path, *args: str, when: str | None = None) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "Ana", "GIT_AUTHOR_EMAIL": "ana@example.org",
           "GIT_COMMITTER_NAME": "Ana", "GIT_COMMITTER_EMAIL": "ana@example.org"}
    if when:
        env.update(GIT_AUTHOR_DATE=when, GIT_COMMITTER_DATE=when)
    return subprocess.run(["git", "-C", str(repo), *args], env=env, check=True, capture_output=True, text=True).stdout


def commit(repo: Path, files: dict[str, str], message: str, when: str) -> str:
    for name, text in files.items():
        (repo / name).write_text(text)
    git(repo, "add", *files)
    git(repo, "commit", "-q", "-m", message, when=when)
    return git(repo, "rev-parse", "HEAD").strip()


def session(path: Path, sid: str, cwd: str, turns: list[tuple[str, dict, str]]) -> None:
    """turns: (time, tool input, tool result text), one tool call each."""
    recs = [{"type": "user", "sessionId": sid, "cwd": cwd, "uuid": f"{sid}-u0", "timestamp": turns[0][0],
             "message": {"role": "user", "content": "please do the work"}}]
    for i, (when, inp, result) in enumerate(turns):
        name = "Bash" if "command" in inp else "Edit"
        recs.append({"type": "assistant", "sessionId": sid, "cwd": cwd, "uuid": f"{sid}-a{i}", "timestamp": when,
                     "requestId": f"r{sid}{i}", "message": {"id": f"m{sid}{i}", "role": "assistant", "model": "claude-sonnet-4-5",
                     "content": [{"type": "tool_use", "id": f"t{sid}{i}", "name": name, "input": inp}],
                     "usage": {"input_tokens": 1, "output_tokens": 1}}})
        recs.append({"type": "user", "sessionId": sid, "cwd": cwd, "uuid": f"{sid}-r{i}", "timestamp": when,
                     "message": {"role": "user", "content": [{"type": "tool_result", "tool_use_id": f"t{sid}{i}",
                                                              "content": result}]}})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))


def sample_sources(tmp_path: Path) -> tuple[Path, Path, dict[str, str]]:
    """A git repository and the transcripts of three sessions: A and B work in the repository
    (A committed c1 and, by its trailer, c4; B committed c2), C works elsewhere; c3 and c5 were
    made by hand. Returns the repository, the projects folder and the commits' hashes."""
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    shas = {
        "c1": commit(repo, {"cli.py": "v1"}, "Add verbose flag", "2026-03-02T09:01:42+00:00"),
        "c3": commit(repo, {"other.py": "x"}, "Unrelated fix by hand", "2026-03-02T10:10:00+00:00"),
        "c2": commit(repo, {"docs.md": "flags"}, "Document flags\n\nLonger body.", "2026-03-02T10:15:00+00:00"),
        "c4": commit(repo, {"cli.py": "v2"}, f"Tidy the CLI\n\nClaude-Session: {A}", "2026-03-03T12:00:00+00:00"),
        "c5": commit(repo, {"cli.py": "v3"}, "Refactor next week", "2026-03-09T12:00:00+00:00"),
    }
    projects = tmp_path / "projects"
    r = str(repo)
    session(projects / "-repo" / f"{A}.jsonl", A, r, [
        ("2026-03-02T09:00:00Z", {"file_path": f"{r}/cli.py", "old_string": "a", "new_string": "b"}, "ok"),
        ("2026-03-02T09:01:40Z", {"command": "git commit -am 'Add verbose flag'"},
         f"[main {shas['c1'][:7]}] Add verbose flag\n 1 file changed"),
    ])
    session(projects / "-repo" / f"{B}.jsonl", B, r, [
        ("2026-03-02T10:00:00Z", {"file_path": f"{r}/docs.md", "old_string": "a", "new_string": "b"}, "ok"),
        ("2026-03-02T10:14:55Z", {"command": "git commit -F - <<'EOF'\nDocument flags\n\nLonger body.\nEOF"}, ""),
    ])
    session(projects / "-elsewhere" / f"{C}.jsonl", C, "/elsewhere", [
        ("2026-03-02T10:05:00Z", {"file_path": "/elsewhere/docs.md", "old_string": "a", "new_string": "b"}, "ok"),
        ("2026-03-02T10:14:58Z", {"command": "git commit -m 'Document flags'"}, ""),
    ])
    return repo, projects, shas


@pytest.fixture
def sample(tmp_path: Path) -> tuple[Workspace, Path, dict[str, str]]:
    repo, projects, shas = sample_sources(tmp_path)
    ws = Workspace.at(tmp_path / "ws")
    ws.init()
    SessionIngester(ws.open_log(), ws.data / "ingest.lock").run([projects])
    return ws, repo, shas


def test_git_ingest_records_every_commit_once(sample) -> None:
    ws, repo, shas = sample
    assert ingest_git(ws.open_log(), repo).new == 5
    assert ingest_git(ws.open_log(), repo).new == 0
    commit(repo, {"new.py": "n"}, "One more", "2026-03-10T08:00:00+00:00")
    assert ingest_git(ws.open_log(), repo).new == 1
    events = ws.open_log().snapshot().frame("git.commit").collect()
    assert events.height == 6 and events["sha"].n_unique() == 6
    c2 = events.filter(pl.col("sha") == shas["c2"]).row(0, named=True)
    assert c2["message"] == "Document flags\n\nLonger body.\n" and c2["parents"] == [shas["c3"]]
    assert json.loads(c2["files_json"]) == [{"path": "docs.md", "status": "A", "old_path": None, "added": 1, "removed": 0}]
    assert c2["committed_at"].isoformat() == "2026-03-02T10:15:00+00:00"
    bad = run_cli("ingest", "git", str(repo.parent / "nope"), root=ws.root)
    assert bad.returncode == 2 and b"nope" in bad.stderr


def test_session_commit_links_on_a_labelled_sample(sample) -> None:
    ws, repo, shas = sample
    ingest_git(ws.open_log(), repo)
    Engine(ws.tables_dir, discover()).run(ws.open_log().snapshot(), ["conversations"], full=True)
    links = pl.read_parquet(ws.tables_dir / "session_commits.parquet")
    truth = {(A, shas["c1"]), (B, shas["c2"]), (A, shas["c4"])}
    predicted = set(links.select("session_id", "sha").iter_rows())
    precision = len(predicted & truth) / len(predicted)
    recall = len(predicted & truth) / len(truth)
    print(f"session_commits on the labelled sample: precision {precision:.2f}, recall {recall:.2f}")
    assert precision == 1.0 and recall == 1.0
    methods = {(s, sha): set(links.filter((pl.col("session_id") == s) & (pl.col("sha") == sha))["method"])
               for s, sha in truth}
    assert methods[(A, shas["c1"])] >= {"hash_in_tool_result", "commit_command", "time_and_files"}
    assert methods[(B, shas["c2"])] == {"commit_command", "time_and_files"}
    assert methods[(A, shas["c4"])] == {"session_trailer"}
    assert links.filter(pl.col("method") == "hash_in_tool_result")["confidence"].to_list() == [1.0]
