"""`chronicle search`: the query language, what each role means, filters, context,
current on read, incremental = full (on the real corpus too), and bad input."""

from __future__ import annotations

import json
import random
import re
import shutil
from pathlib import Path

import pytest

from chronicle import search
from chronicle.ingest.sessions import SessionIngester
from chronicle.search import QueryError, compile_query
from chronicle.store import EventLog

from conftest import SHARED, run_cli

CORPUS = SHARED / "corpus" / "claude-code"


@pytest.mark.parametrize("query, fts", [
    ("flaky test", "flaky AND test"),
    ('"flaky test" OR hang*', '"flaky test" OR hang*'),
    ("pytest NOT (timeout OR hang)", "pytest NOT ( timeout OR hang )"),
    ("sk-test cli.py", '"sk test" AND "cli py"'),
    ("déjà", "déjà"),
])
def test_queries_compile_to_fts5(query: str, fts: str) -> None:
    assert compile_query(query) == fts


@pytest.mark.parametrize("query, position, expected", [
    ('"unclosed phrase', 1, 'closing "'),
    ("pytest AND", 11, "after AND"),
    ("OR pytest", 1, "before OR"),
    ("(pytest", 8, "')'"),
    ("pytest)", 7, "no ')'"),
    ("NOT pytest", 1, "NOT cannot come first"),
    ("", 1, "something to search for"),
])
def test_a_bad_query_names_its_position(query: str, position: int, expected: str) -> None:
    with pytest.raises(QueryError, match=re.escape(expected)) as info:
        compile_query(query)
    assert info.value.position + 1 == position


def _line(**fields: object) -> dict:
    return {"sessionId": "s1", "cwd": "/home/ana/repo", "timestamp": "2026-03-02T09:00:00Z", **fields}


def _write(path: Path, records: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(json.dumps(r).encode() + b"\n" for r in records))


def _session(root: Path) -> None:
    """One session with every kind of record a search must tell apart."""
    _write(root / "-home-ana-repo" / "s1.jsonl", [
        _line(type="user", uuid="u1", message={"role": "user", "content": "why is the zebra test flaky"}),
        _line(type="user", uuid="u2", isMeta=True, message={"role": "user", "content": "zebra caveat injected"}),
        _line(type="user", uuid="u3", message={"role": "user", "content": "<task-notification>zebra done"}),
        _line(type="user", uuid="u4", isCompactSummary=True,
              message={"role": "user", "content": "summary: the zebra work so far"}),
        _line(type="assistant", uuid="a1", timestamp="2026-03-02T09:00:05Z", requestId="r1",
              message={"id": "m1", "role": "assistant", "model": "claude-sonnet-4-5", "content": [
                  {"type": "thinking", "thinking": "the zebra fixture leaks state"},
                  {"type": "text", "text": "Let me run the zebra tests."},
                  {"type": "tool_use", "id": "t1", "name": "Bash", "input": {"command": "pytest -k zebra"}}],
                  "usage": {"input_tokens": 5, "output_tokens": 5}}),
        _line(type="user", uuid="u5", timestamp="2026-03-02T09:00:09Z", message={"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "t1", "content": "1 failed: test_zebra_stripes"}]}),
        _line(type="user", uuid="u6", timestamp="2026-03-04T12:00:00Z",
              message={"role": "user", "content": "thanks, the okapi now passes"}),
    ])
    _write(root / "-home-ana-repo" / "agent-sub1.jsonl", [
        _line(type="assistant", uuid="x1", isSidechain=True, agentId="sub1", requestId="r9",
              message={"id": "m9", "role": "assistant", "model": "claude-haiku-4-5", "content": [
                  {"type": "text", "text": "subagent found the zebra config"}],
                  "usage": {"input_tokens": 1, "output_tokens": 1}}),
    ])


def _search(ws: Path, *args: str) -> list[dict]:
    proc = run_cli("search", *args, "--json", "--limit", "50", root=ws)
    assert proc.returncode == 0, proc.stderr
    return [json.loads(x) for x in proc.stdout.splitlines()]


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    run_cli("init", root=tmp_path, check=True)
    _session(tmp_path / "claude")
    run_cli("ingest", "sessions", str(tmp_path / "claude"), root=tmp_path, check=True)
    return tmp_path


def test_roles_mean_what_they_say(ws: Path) -> None:
    hits = _search(ws, "zebra")
    assert {h["role"] for h in hits} == {"user", "system", "assistant", "thinking", "tool"}
    human = _search(ws, "zebra", "--role", "user")
    assert [h["snippet"] for h in human] == ["why is the [zebra] test flaky"], "meta, notifications, summaries are not human"
    system = {h["snippet"] for h in _search(ws, "zebra", "--role", "system")}
    assert any("caveat" in s for s in system) and any("summary" in s for s in system)
    tools = _search(ws, "zebra", "--tool", "Bash")
    assert len(tools) == 2 and {h["tool"] for h in tools} == {"Bash"}  # the call and its result
    assert any("stripes" in h["snippet"] for h in tools)
    assert [h["snippet"] for h in _search(ws, "zebra", "--role", "thinking")] == ["the [zebra] fixture leaks state"]
    sub = _search(ws, "zebra", "--agent", "sub1")
    assert len(sub) == 1 and "subagent" in sub[0]["snippet"]


def test_filters_sort_context_and_how_to_open_a_hit(ws: Path) -> None:
    assert _search(ws, "zebra", "--project", "/elsewhere") == []
    assert len(_search(ws, "zebra", "--project", "/home/ana/repo")) >= 6
    assert _search(ws, "okapi", "--until", "2026-03-03") == []
    late = _search(ws, "okapi OR zebra", "--since", "2026-03-03")
    assert [h["snippet"] for h in late] == ["thanks, the [okapi] now passes"]
    newest = _search(ws, "zebra OR okapi", "--sort", "time")
    assert [h["time"] for h in newest] == sorted((h["time"] for h in newest), reverse=True)
    hit = _search(ws, "stripes", "--context", "1")[0]
    assert [c["role"] for c in hit["context"]] == ["tool", "user"]  # the call before it, the next prompt after
    assert "chronicle history session s1" in hit["open"] and any("#seq-" in o for o in hit["open"])
    text = run_cli("search", "stripes", root=ws, check=True).stdout.decode()
    assert "tool:Bash" in text and "[stripes]" in text and "open: chronicle history session s1" in text


def test_a_new_line_is_found_by_the_next_search_and_a_rewrite_forgets_the_old_text(ws: Path) -> None:
    assert _search(ws, "giraffe") == []
    index = ws / "data" / "tables" / "search.sqlite"
    transcript = ws / "claude" / "-home-ana-repo" / "s1.jsonl"
    with open(transcript, "ab") as fh:
        fh.write(json.dumps(_line(type="user", uuid="u7", message={"role": "user", "content": "a giraffe"})).encode()
                 + b"\n")
    run_cli("ingest", "sessions", str(ws / "claude"), root=ws, check=True)
    assert [h["snippet"] for h in _search(ws, "giraffe")] == ["a [giraffe]"]  # no rebuild in between
    _write(transcript, [_line(type="user", uuid="n1", message={"role": "user", "content": "only a narwhal"})])
    run_cli("ingest", "sessions", str(ws / "claude"), root=ws, check=True)
    assert _search(ws, "giraffe") == [] and len(_search(ws, "narwhal")) == 1
    search.remove(index.parent)  # never precious: it comes back
    assert len(_search(ws, "narwhal")) == 1


def test_documents_and_commits_are_searched_with_their_filters(tmp_path: Path) -> None:
    from experiment_helpers import chronicle, make_workspace

    ws = make_workspace(tmp_path)
    assert chronicle("run", "demo", "--provider", "echo", "--stage", "draft", root=ws).returncode == 0
    commit = {"type": "git.commit", "stream": "repo:/r", "repo": "/r", "sha": "c" * 40, "parents": [],
              "author_name": "a", "author_email": "a", "authored_at": "2026-01-01T00:00:00Z", "committer_name": "a",
              "committer_email": "a", "committed_at": "2026-01-01T00:00:00Z", "message": "Fix the flywheel cache",
              "files_json": "[]"}
    run_cli("append", root=ws, stdin=json.dumps(commit).encode() + b"\n", check=True)
    docs = _search(ws, "flywheel", "--docs")
    assert docs and {h["kind"] for h in docs} == {"document"} and {h["stage"] for h in docs} == {"draft"}
    assert {h["role"] for h in docs} >= {"prompt", "response"}
    assert _search(ws, "flywheel", "--docs", "--stage", "evaluation") == []
    assert {h["model"] for h in _search(ws, "flywheel", "--docs", "--model", docs[0]["model"])} == {docs[0]["model"]}
    assert [h["role"] for h in _search(ws, "flywheel", "--role", "commit")] == ["commit"]
    assert _search(ws, "flywheel", "--sessions") == []


def test_bad_input_is_exit_2_and_nothing_changes(ws: Path) -> None:
    before = run_cli("checkpoint", "--json", root=ws, check=True).stdout
    proc = run_cli("search", "pytest AND", root=ws)
    assert proc.returncode == 2 and "position 11" in proc.stderr.decode() and "Traceback" not in proc.stderr.decode()
    assert run_cli("search", "x", "--since", "yesterday", root=ws).returncode == 2
    assert json.loads(run_cli("checkpoint", "--json", root=ws, check=True).stdout)["seq"] == json.loads(before)["seq"]
    fresh = ws / "fresh"
    run_cli("init", root=fresh, check=True)
    proc = run_cli("search", "x", "--stale", root=fresh)
    assert proc.returncode == 2 and "no search index yet" in proc.stderr.decode()
    proc = run_cli("search", "x", root=ws / "nowhere")
    assert proc.returncode == 3 and "not a workspace" in proc.stderr.decode()


def test_search_answers_without_loading_polars(ws: Path) -> None:
    import subprocess
    import sys

    _search(ws, "zebra")  # current now
    probe = ("import sys, runpy; sys.argv = ['chronicle', 'search', 'zebra', '--json']; "
             "exec('try:\\n runpy.run_module(\"chronicle\", run_name=\"__main__\")\\nexcept SystemExit: pass'); "
             "print('LOADED' if 'polars' in sys.modules or 'pyarrow' in sys.modules else 'LIGHT', file=sys.stderr)")
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, timeout=60,
                          env={**__import__("os").environ, "CHRONICLE_ROOT": str(ws)})
    assert proc.returncode == 0 and proc.stderr.decode().strip().endswith("LIGHT"), proc.stderr
    assert b"zebra" in proc.stdout


@pytest.mark.skipif(not CORPUS.is_dir(), reason="the shared corpus is absent (a fresh clone)")
def test_an_index_kept_up_line_by_line_equals_one_built_at_once_on_the_real_corpus(tmp_path: Path) -> None:
    files = sorted(p for p in CORPUS.rglob("*.jsonl") if p.is_file())
    rng = random.Random(5)
    src = tmp_path / "src"
    written = {f: 0 for f in files}
    actions = []
    with EventLog.init(tmp_path / "log") as log:
        ingester = SessionIngester(log, tmp_path / "ingest.lock", quiet_seconds=3600)
        for step in range(6):
            for f in (files if step == 5 else rng.sample(files, k=len(files) // 2)):
                data = f.read_bytes()
                upto = len(data) if step == 5 else min(len(data), written[f] + rng.randrange(1, 40_000))
                target = src / f.relative_to(CORPUS)
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data[:upto])
                written[f] = upto
            if step == 3:  # a rewrite: the file shrinks, and its earlier units no longer count
                victim = src / files[0].relative_to(CORPUS)
                victim.write_bytes(files[0].read_bytes()[: max(1, written[files[0]] // 2)])
            ingester.run([src])
            actions.append(search.catch_up(tmp_path / "inc", log.snapshot()))
            search.catch_up(tmp_path / f"full{step}", log.snapshot())
            inc, full = search.dump(tmp_path / "inc"), search.dump(tmp_path / f"full{step}")
            assert inc == full, f"step {step}"
            shutil.rmtree(tmp_path / f"full{step}")
    assert actions[0] == "built" and "updated" in actions[1:] and len(inc) > 300


def test_the_daemon_keeps_a_built_index_current(ws: Path) -> None:
    from chronicle import search as index

    assert _search(ws, "zebra")  # the first search builds the index
    (ws / "chronicle.toml").write_text(f'[watch]\nclaude_roots = ["{ws / "claude"}"]\ngit_repos = []\n')
    with open(ws / "claude" / "-home-ana-repo" / "s1.jsonl", "ab") as fh:
        fh.write(json.dumps(_line(type="user", uuid="u9", message={"role": "user", "content": "a wombat"})).encode()
                 + b"\n")
    run_cli("watch", "--once", root=ws, check=True)
    head = EventLog(ws / "data" / "log").snapshot().head
    assert index.current(ws / "data" / "tables", head)  # the next search need not catch up
    assert [h["snippet"] for h in _search(ws, "wombat", "--stale")] == ["a [wombat]"]
