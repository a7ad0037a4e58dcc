"""Claude Code sessions: lossless incremental ingest, projections and byte-exact export."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest

from chronicle.events import SessionLine
from chronicle.export import ExportError, safe_target
from chronicle.ingest.sessions import SessionIngester
from chronicle.projection import Engine, discover
from chronicle.workspace import Workspace

from conftest import ROOT, SHARED, run_cli

EXAMPLES = ROOT / "data" / "examples" / "claude-projects"
SESSION = "5e55a000-0000-4000-8000-000000000001"


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    w = Workspace.at(tmp_path / "ws")
    w.init()
    return w


def ingest(ws: Workspace, *paths: Path, quiet: float = 3600.0):
    return SessionIngester(ws.open_log(), ws.data / "ingest.lock", quiet_seconds=quiet).run(list(paths))


def tables(ws: Workspace) -> dict[str, pl.DataFrame]:
    Engine(ws.tables_dir, discover()).run(ws.open_log().snapshot(), full=True)
    return {p.stem: pl.read_parquet(p) for p in ws.tables_dir.glob("*.parquet")}


def lines(ws: Workspace) -> pl.DataFrame:
    return ws.open_log().snapshot().frame("session.line").collect()


def line(record: dict) -> bytes:
    return json.dumps(record).encode() + b"\n"


# ------------------------------------------------------------------ ingest


def test_every_line_is_kept_with_its_offset_and_header(ws: Workspace) -> None:
    summary = ingest(ws, EXAMPLES)
    assert summary.files == 4 and summary.errors == 0
    df = lines(ws)
    main = EXAMPLES / "-home-ana-repo" / f"{SESSION}.jsonl"
    rows = df.filter(pl.col("path") == str(main)).sort("offset")
    data = main.read_bytes()
    assert b"".join(rows["raw"].to_list()) == data
    assert rows["line_no"].to_list() == list(range(1, data.count(b"\n") + 1))
    for off, raw in zip(rows["offset"], rows["raw"]):
        assert data[off : off + len(raw)] == raw
    first_user = rows.filter(pl.col("uuid") == "u1").row(0, named=True)
    assert (first_user["record_type"], first_user["session_id"], first_user["cwd"]) == ("user", SESSION, "/home/ana/repo")
    assert rows.filter(pl.col("record_type") == "brand-new-record-type").height == 1  # unknown types pass through


def test_reingest_adds_nothing_and_appends_only_new_bytes(ws: Workspace, tmp_path: Path) -> None:
    tree = tmp_path / "projects"
    shutil.copytree(EXAMPLES, tree)
    ingest(ws, tree)
    head = ws.open_log().snapshot().head
    assert ingest(ws, tree).lines == 0 and ws.open_log().snapshot().head == head
    f = tree / "-home-ana-repo" / f"{SESSION}.jsonl"
    with open(f, "ab") as fh:
        fh.write(line({"type": "user", "uuid": "n1", "sessionId": SESSION}))
        fh.write(b'{"type": "user", "uuid": "n2", "sess')  # a writer mid-line
    assert ingest(ws, tree).lines == 1
    with open(f, "ab") as fh:
        fh.write(b'ionId": "' + SESSION.encode() + b'"}\n')
    assert ingest(ws, tree).lines == 1
    df = lines(ws).filter(pl.col("path") == str(f)).sort("offset")
    assert b"".join(df["raw"].to_list()) == f.read_bytes()
    assert df["uuid"].to_list()[-2:] == ["n1", "n2"]


def test_unterminated_last_line_is_taken_once_the_file_is_quiet(ws: Workspace, tmp_path: Path) -> None:
    f = tmp_path / "p" / "s.jsonl"
    f.parent.mkdir()
    f.write_bytes(line({"type": "user", "uuid": "a"}) + b'{"type": "user", "uuid": "b"}')
    assert ingest(ws, f.parent, quiet=3600).lines == 1
    assert ingest(ws, f.parent, quiet=0).lines == 1
    assert b"".join(lines(ws).sort("offset")["raw"].to_list()) == f.read_bytes()


def test_truncated_or_rewritten_file_starts_a_new_generation(ws: Workspace, tmp_path: Path) -> None:
    f = tmp_path / "p" / "s.jsonl"
    f.parent.mkdir()
    f.write_bytes(line({"type": "user", "uuid": "a"}) + line({"type": "user", "uuid": "b"}))
    ingest(ws, f.parent)
    f.write_bytes(line({"type": "user", "uuid": "c"}))  # shorter: truncated and rewritten
    assert ingest(ws, f.parent).rewritten == 1
    f.write_bytes(line({"type": "user", "uuid": "X"}) + line({"type": "user", "uuid": "d"}))  # same prefix length, new bytes
    assert ingest(ws, f.parent).rewritten == 1
    df = lines(ws)
    assert df.group_by("generation").agg(pl.col("uuid")).sort("generation")["uuid"].to_list() == [
        ["a", "b"], ["c"], ["X", "d"]]  # earlier generations stay in the log
    rewrites = ws.open_log().snapshot().frame("source.rewritten").collect()
    assert "shrank" in rewrites["reason"][0] and "changed" in rewrites["reason"][1]
    out = run_cli("export", "sessions", str(tmp_path / "out"), root=ws.root, check=True)
    assert b"exported 1 files" in out.stdout
    assert (tmp_path / "out" / "s.jsonl").read_bytes() == f.read_bytes()


def test_bad_input_is_recorded_and_ingest_goes_on(ws: Workspace, tmp_path: Path) -> None:
    p = tmp_path / "p"
    p.mkdir()
    (p / "empty.jsonl").write_bytes(b"")
    huge = b'{"type":"user","uuid":"big","pasted":"' + b"x" * (50 * 1024 * 1024) + b'"}\n'
    bad = (line({"type": "user", "uuid": "ok1"}) + b"{not json\n" + b'{"type":"user","text":"\xff\xfe"}\n' + b"[1, 2]\n"
           + b"\n" + b'{"type": 7}\n' + huge + line({"type": "queue-operation", "uuid": "ok2"}))
    (p / "bad.jsonl").write_bytes(bad)
    summary = ingest(ws, p)
    assert summary.errors == 5  # empty file, invalid JSON, invalid UTF-8, not an object, wrong field type
    df = lines(ws).sort("offset")
    assert b"".join(df["raw"].to_list()) == bad  # not one byte lost
    by_line = dict(zip(df["line_no"].to_list(), df["error"].to_list()))
    assert "invalid JSON" in by_line[2] and "invalid UTF-8" in by_line[3] and "not a JSON object" in by_line[4]
    assert by_line[5] is None and "$.type" in by_line[6] and by_line[7] is None and by_line[8] is None
    assert df.filter(pl.col("line_no") == 7)["uuid"][0] == "big"
    errors = tables(ws)["ingest_errors"]
    assert errors.height == 5
    assert errors.filter(pl.col("path").str.ends_with("empty.jsonl"))["error"][0] == "empty file (0 bytes)"
    assert sorted(errors.drop_nulls("line_no")["line_no"].to_list()) == [2, 3, 4, 6]
    assert ingest(ws, p).errors == 0  # recorded once


def test_both_subagent_layouts_sidecars_and_workflow_files(ws: Workspace, tmp_path: Path) -> None:
    proj = tmp_path / "projects" / "-x"
    (proj / "s1" / "subagents" / "workflows" / "wf1").mkdir(parents=True)
    (proj / "s1" / "workflows").mkdir()
    (proj / "s1.jsonl").write_bytes(line({"type": "user", "sessionId": "s1", "uuid": "m"}))
    (proj / "agent-old.jsonl").write_bytes(line({"type": "user", "sessionId": "s1", "agentId": "old", "isSidechain": True}))
    (proj / "s1" / "subagents" / "agent-new.jsonl").write_bytes(line({"type": "user", "sessionId": "s1", "agentId": "new", "isSidechain": True}))
    (proj / "s1" / "subagents" / "agent-new.meta.json").write_bytes(b'{"agentType": "Plan"}')
    (proj / "s1" / "subagents" / "workflows" / "wf1" / "journal.jsonl").write_bytes(line({"type": "workflow_phase"}))
    (proj / "s1" / "workflows" / "wf1.json").write_bytes(b'{"runId": "wf1"}')
    (proj / "notes.txt").write_bytes(b"not a transcript")
    ingest(ws, tmp_path / "projects")
    seen = ws.open_log().snapshot().frame("source.seen").collect()
    assert dict(zip(seen["rel_path"], seen["kind"])) == {
        "-x/s1.jsonl": "session", "-x/agent-old.jsonl": "subagent", "-x/s1/subagents/agent-new.jsonl": "subagent",
        "-x/s1/subagents/agent-new.meta.json": "agent-meta", "-x/s1/subagents/workflows/wf1/journal.jsonl": "workflow-journal",
        "-x/s1/workflows/wf1.json": "workflow"}
    t = tables(ws)
    assert sorted(t["subagents"]["agent_id"].to_list()) == ["new", "old"]
    assert t["subagents"].filter(pl.col("agent_id") == "new")["agent_type"][0] == "Plan"
    assert t["sessions"].filter(pl.col("session_id") == "s1")["subagents"][0] == 2
    out = tmp_path / "restored"
    run_cli("export", "sessions", str(out), "--session", "s1", root=ws.root, check=True)
    for f in (tmp_path / "projects").rglob("*"):
        if f.is_file() and f.name != "notes.txt":
            assert (out / f.relative_to(tmp_path / "projects")).read_bytes() == f.read_bytes(), f


def test_default_roots_include_every_claude_config_dir_and_codex_home(tmp_path: Path) -> None:
    from chronicle.ingest.sources import default_roots

    (tmp_path / "a" / "projects").mkdir(parents=True)
    (tmp_path / "b").mkdir()
    env = {"HOME": str(tmp_path / "home"), "CLAUDE_CONFIG_DIR": f"{tmp_path / 'a'}, {tmp_path / 'b'}"}
    roots = default_roots(env)
    assert roots[:2] == [tmp_path / "home" / ".claude" / "projects", tmp_path / "home" / ".config" / "claude" / "projects"]
    assert roots[2:4] == [(tmp_path / "a" / "projects").resolve(), (tmp_path / "b").resolve()]
    assert roots[4:] == [tmp_path / "home" / ".codex" / "sessions"]
    assert default_roots({**env, "CODEX_HOME": str(tmp_path / "cx")})[4:] == [tmp_path / "cx" / "sessions"]


# ------------------------------------------------------------------ projections


def test_projections_on_the_example_tree(ws: Workspace) -> None:
    ingest(ws, EXAMPLES)
    t = tables(ws)
    calls = t["api_calls"]
    # one row per (message.id, requestId); the copy with the most tokens; no <synthetic>; the subagent's
    # own record wins over its copy in the parent's progress record
    assert calls.height == 9 and calls["message_id"].n_unique() == 9
    assert calls.filter(pl.col("message_id") == "msg_01")["output_tokens"][0] == 40
    assert "<synthetic>" not in calls["model"].to_list()
    assert calls.filter(pl.col("message_id") == "msg_sub1")["subagent_id"][0] == "ab12cd34"
    daily = t["usage_daily"]
    future = daily.filter(pl.col("model") == "some-future-model-9")
    assert future["priced"][0] is False and future["cost_usd"][0] is None  # unpriced, not $0
    sonnet = daily.filter(pl.col("model").str.starts_with("claude-sonnet-4-5")).row(0, named=True)
    # 24 in x $3 + 275 out x $15 + 1500 5m-writes x $3.75 + 500 1h-writes x $6 + 8600 reads x $0.30, per million
    assert sonnet["cost_usd"] == pytest.approx((24 * 3 + 275 * 15 + 1500 * 3.75 + 500 * 6 + 8600 * 0.30) / 1e6)
    tools = t["tool_calls"]
    assert tools.filter(pl.col("tool_use_id") == "toolu_test")["is_error"][0] is True
    assert tools.filter(pl.col("tool_use_id") == "toolu_read")["is_error"][0] is False  # absent means success
    assert tools.filter(pl.col("tool_use_id") == "toolu_task")["spawned_agent_id"][0] == "ab12cd34"
    sub = t["subagents"].row(0, named=True)
    assert (sub["agent_id"], sub["parent_tool_use_id"], sub["agent_type"], sub["description"]) == (
        "ab12cd34", "toolu_task", "Explore", "Find other flag tests")
    s = t["sessions"].filter(pl.col("session_id") == SESSION).row(0, named=True)
    assert s["title"] == "Add a --verbose flag"  # from a summary in a later file, through leafUuid
    assert s["project"] == "/home/ana/repo" and s["human_messages"] == 3 and s["subagents"] == 1
    humans = t["messages"].filter(pl.col("is_human") & (pl.col("session_id") == SESSION))["uuid"].to_list()
    assert humans == ["u1", "u6", "u10"]  # not the isMeta caveat, not the compact summary, not tool results


USAGE_TABLES = ("api_calls", "usage_daily", "usage_by_session")


def test_usage_kept_up_line_by_line_equals_a_full_build(ws: Workspace, tmp_path: Path) -> None:
    # The example tree written one line per file per pass, as a watched tree grows: msg_01's
    # 40-token copy comes after its 1-token one, and the parent's progress copy of msg_sub1
    # long after the subagent's own record (which must still win the tie).
    tree = tmp_path / "tree"
    files = {f: f.read_bytes().splitlines(keepends=True) for f in EXAMPLES.rglob("*.jsonl")}
    engine = Engine(tmp_path / "inc", discover())
    actions = []
    for i in range(max(len(v) for v in files.values())):
        for f, content in files.items():
            out = tree / f.relative_to(EXAMPLES)
            out.parent.mkdir(parents=True, exist_ok=True)
            with open(out, "ab") as fh:
                fh.write(b"".join(content[i:i + 1]))
        ingest(ws, tree)
        actions += [o.action for o in engine.run(ws.open_log().snapshot(), ["usage"])]
    assert actions[0] == "built" and set(actions[1:]) == {"updated"}
    full = tables(ws)
    for t in USAGE_TABLES:
        assert pl.read_parquet(tmp_path / "inc" / f"{t}.parquet").equals(full[t]), t
    calls = full["api_calls"]
    assert calls.filter(pl.col("message_id") == "msg_01")["output_tokens"][0] == 40
    assert calls.filter(pl.col("message_id") == "msg_sub1")["subagent_id"][0] == "ab12cd34"
    # A rewritten file withdraws its earlier lines' calls: the merge cannot, a full build does.
    parent = tree / "-home-ana-repo" / f"{SESSION}.jsonl"
    parent.write_bytes(b"".join(files[EXAMPLES / parent.relative_to(tree)][:3]))  # msg_01's 1-token copy only
    ingest(ws, tree)
    assert [o.action for o in engine.run(ws.open_log().snapshot(), ["usage"])] == ["built"]
    full = tables(ws)
    assert full["api_calls"].filter(pl.col("message_id") == "msg_01")["output_tokens"][0] == 1
    for t in USAGE_TABLES:
        assert pl.read_parquet(tmp_path / "inc" / f"{t}.parquet").equals(full[t]), t


def test_a_projection_with_no_new_inputs_or_no_change_is_left_as_it_is(ws: Workspace, tmp_path: Path) -> None:
    ingest(ws, EXAMPLES)
    engine = Engine(tmp_path / "t", discover())
    engine.run(ws.open_log().snapshot())
    before = (tmp_path / "t" / "documents.parquet").stat().st_mtime_ns
    calls_before = (tmp_path / "t" / "api_calls.parquet").stat().st_mtime_ns
    ws.open_log().append([SessionLine(stream="session:s", path="p.jsonl", generation=0, line_no=1, offset=0,
                                      raw=b"{", error="invalid JSON")])
    outcomes = {o.name: o for o in engine.run(ws.open_log().snapshot())}
    assert outcomes["experiments"].action == "current" and outcomes["usage"].action == "updated"
    assert outcomes["experiments"].seq == ws.open_log().snapshot().head
    assert Engine(tmp_path / "t", discover()).checkpoints()["experiments"]["seq"] == outcomes["experiments"].seq
    assert (tmp_path / "t" / "documents.parquet").stat().st_mtime_ns == before
    # usage ran, found no API call among the new lines, and so rewrote nothing
    assert (tmp_path / "t" / "api_calls.parquet").stat().st_mtime_ns == calls_before


# ------------------------------------------------------------------ export


def test_export_session_is_byte_exact_and_paths_cannot_escape(ws: Workspace, tmp_path: Path) -> None:
    ingest(ws, EXAMPLES)
    out = run_cli("export", "session", SESSION, root=ws.root, check=True).stdout
    assert out == (EXAMPLES / "-home-ana-repo" / f"{SESSION}.jsonl").read_bytes()
    missing = run_cli("export", "session", "nope", root=ws.root)
    assert missing.returncode == 2 and b"no ingested transcript" in missing.stderr
    (tmp_path / "a-file").write_text("")
    unwritable = run_cli("export", "sessions", str(tmp_path / "a-file" / "sub"), root=ws.root)
    assert unwritable.returncode == 2 and b"Not a directory" in unwritable.stderr and b"Traceback" not in unwritable.stderr
    for bad in ("../x.jsonl", "/etc/passwd", "a/../../x"):
        with pytest.raises(ExportError, match="refusing"):
            safe_target(tmp_path / "out", bad)


def test_cli_ingest_prints_a_summary_and_json(ws: Workspace) -> None:
    out = run_cli("ingest", "sessions", str(EXAMPLES), root=ws.root, check=True).stdout.decode()
    assert "4 files (4 new" in out and "30 lines" in out
    again = json.loads(run_cli("ingest", "sessions", str(EXAMPLES), "--json", root=ws.root, check=True).stdout)
    assert again["lines"] == 0 and again["files"] == 4
    assert run_cli("ingest", "sessions", str(ws.root / "nope"), root=ws.root).returncode == 2


# ------------------------------------------------------------------ the real corpus

CORPUS = SHARED / "corpus" / "claude-code"
REAL = CORPUS / "claude-code-log" / "test" / "test_data" / "real_projects"
REFERENCE = {  # NOTES.md: calls / input / output / cache_creation / cache_read
    "claude-haiku-4-5-20251001": (18, 22155, 1606, 42768, 236968),
    "claude-opus-4-1-20250805": (8, 25, 560, 9489, 146034),
    "claude-opus-4-20250514": (3, 14, 643, 19749, 36713),
    "claude-opus-4-5-20251101": (17, 8, 236, 33306, 339378),
    "claude-opus-4-6": (9, 23, 88, 9036, 239606),
    "claude-sonnet-4-20250514": (59, 361, 2887, 123685, 1689408),
    "claude-sonnet-4-5-20250929": (11, 67, 802, 14376, 52479),
}
corpus = pytest.mark.skipif(not CORPUS.is_dir(), reason="../shared/corpus is not present (a fresh clone)")


@corpus
def test_real_corpus_round_trips_byte_for_byte_and_reingest_adds_nothing(ws: Workspace, tmp_path: Path) -> None:
    ingest(ws, CORPUS, quiet=0)  # quiet=0: a last line without a newline is taken too
    head = ws.open_log().snapshot().head
    assert ingest(ws, CORPUS, quiet=0).lines == 0 and ws.open_log().snapshot().head == head
    out = tmp_path / "restored"
    run_cli("export", "sessions", str(out), root=ws.root, check=True)
    originals = [f for f in CORPUS.rglob("*") if f.is_file() and (f.suffix in (".jsonl", ".json"))]
    assert len(originals) > 100
    for f in originals:
        restored = out / f.relative_to(CORPUS)
        assert hashlib.sha256(restored.read_bytes()).digest() == hashlib.sha256(f.read_bytes()).digest(), f


@corpus
def test_real_corpus_api_calls_match_the_reference_totals(ws: Workspace) -> None:
    ingest(ws, REAL)
    calls = tables(ws)["api_calls"]
    got = {m: (n, i, o, cc, cr) for m, n, i, o, cc, cr in calls.group_by("model").agg(
        pl.len(), pl.col("input_tokens").sum(), pl.col("output_tokens").sum(),
        pl.col("cache_creation_input_tokens").sum(), pl.col("cache_read_input_tokens").sum()).iter_rows()}
    assert got == REFERENCE


WRITER = """
import sys, time
src, dst = sys.argv[1], sys.argv[2]
data = open(src, 'rb').read()
step = 97  # cuts lines in the middle
with open(dst, 'ab', buffering=0) as fh:
    for i in range(0, len(data), step):
        fh.write(data[i:i + step])
        time.sleep(0.002)
"""


@corpus
def test_ingest_while_another_process_appends_equals_a_one_shot_ingest(ws: Workspace, tmp_path: Path) -> None:
    src = max(REAL.rglob("*.jsonl"), key=lambda f: f.stat().st_size)
    live = tmp_path / "live" / "proj" / src.name
    live.parent.mkdir(parents=True)
    live.touch()
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(src), str(live)])
    try:
        while writer.poll() is None:
            ingest(ws, tmp_path / "live")
            time.sleep(0.01)
    finally:
        writer.wait(timeout=60)
    ingest(ws, tmp_path / "live", quiet=0)
    assert live.read_bytes() == src.read_bytes()
    got = lines(ws).sort("offset")
    once = Workspace.at(tmp_path / "once")
    once.init()
    ingest(once, src, quiet=0)
    want = lines(once).sort("offset")
    assert got["raw"].to_list() == want["raw"].to_list()
    assert got["offset"].to_list() == want["offset"].to_list()
    assert got["uuid"].to_list() == want["uuid"].to_list()
    assert got["generation"].unique().to_list() == [0]


FULL_INGEST = """
import resource, signal, sys
from pathlib import Path
from chronicle.ingest.sessions import SessionIngester
from chronicle.store import StorageFull
from chronicle.workspace import Workspace
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
ws = Workspace.at(sys.argv[1])
log = ws.open_log()
resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[3]),) * 2)
try:
    SessionIngester(log, ws.data / "ingest.lock", quiet_seconds=0, chunk_bytes=64 * 1024).run([Path(sys.argv[2])])
except StorageFull as exc:
    print("full", exc)
"""


def test_a_commit_that_fails_mid_file_stops_the_pipeline_and_a_rerun_fills_in(ws: Workspace, tmp_path: Path) -> None:
    """Batches are hashed and committed on background threads, two at a time. When
    one fails (a real file-size limit on its segment), the batch queued behind it,
    the next chunk of the same file, must not commit: its cursor would pass lines
    that were never recorded."""
    import base64
    import random

    rng = random.Random(5)
    tree = tmp_path / "tree" / "proj"
    tree.mkdir(parents=True)

    def chat(n: int) -> bytes:
        return b"".join(line({"type": "user", "uuid": f"u{i}", "message": {"role": "user", "content": "word " * 40}})
                        for i in range(n))

    (tree / "a.jsonl").write_bytes(chat(400))
    # A line of incompressible text too big for the limit, then more chunks of the same file.
    big = line({"type": "user", "uuid": "img", "message": {"role": "user", "content": base64.b64encode(rng.randbytes(2_000_000)).decode()}})
    (tree / "b.jsonl").write_bytes(chat(300) + big + chat(1200))
    (tree / "c.jsonl").write_bytes(chat(400))
    proc = subprocess.run([sys.executable, "-c", FULL_INGEST, str(ws.root), str(tmp_path / "tree"), str(1_500_000)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("full ") and "no space to write" in proc.stdout, proc.stdout
    # What was committed is, per file, a gap-free prefix that its cursor matches.
    got = lines(ws)
    cursors = ws.open_log().snapshot().frame("source.appended").collect()
    for path, rows in got.group_by("path"):
        rows = rows.sort("offset")
        data = Path(path[0]).read_bytes()
        end = cursors.filter(pl.col("path") == path[0])["end"].max()
        assert b"".join(rows["raw"].to_list()) == data[:end]
    assert got.filter(pl.col("path").str.ends_with("b.jsonl")).height < 1501  # b stopped at the big line
    # A rerun without the limit records the rest, once.
    ingest(ws, tmp_path / "tree", quiet=0)
    got = lines(ws)
    for f in tree.iterdir():
        rows = got.filter(pl.col("path") == str(f)).sort("offset")
        assert b"".join(rows["raw"].to_list()) == f.read_bytes()
        assert rows["offset"].is_unique().all()
    from chronicle.store.integrity import verify
    assert verify(ws.open_log()).problems == []


def test_episodes_observation_action_reaction(ws: Workspace) -> None:
    ingest(ws, EXAMPLES)
    ep = tables(ws)["episodes"].filter(pl.col("session_id") == SESSION).sort("index")
    assert ep["prompt_uuid"].to_list() == ["u1", "u6", "u10"]  # harness text and tool results are not prompts
    first, second, last = ep.rows(named=True)
    assert first["actions"] == ["read", "edit", "test"] and first["tool_errors"] == 1
    assert (first["reaction"], first["reaction_confidence"]) == ("correct", 0.75)
    assert second["files_touched"] == ["/home/ana/repo/cli.py"] and second["last_test_status"] == "failed"
    assert second["actions"] == ["delegate", "vcs"] and second["subagents"] == ["ab12cd34"]
    assert second["compacted"] is True and second["reaction"] == "approve"
    assert last["reaction"] == "none" and last["reaction_uuid"] is None
    assert set(ep["action_taxonomy"]) == {"action.v1"} and set(ep["reaction_taxonomy"]) == {"reaction.v1"}
    again = tables(ws)["episodes"]
    assert again["episode_id"].to_list() == tables(ws)["episodes"]["episode_id"].to_list()
    assert again["episode_id"].n_unique() == again.height


@pytest.mark.parametrize("text,label", [
    ("[Request interrupted by user for tool use]", "block"),
    ("stop, that's enough", "block"),
    ("No, use the other file instead", "correct"),
    ("it still doesn't work", "correct"),
    ("Why did you delete the test?", "question"),
    ("Looks good, thanks!", "approve"),
    ("Now add a README section", "redirect"),
    ("hmm", "unknown"),
])
def test_reaction_taxonomy(text: str, label: str) -> None:
    from chronicle.projections.episodes import reaction

    assert reaction(text)[0] == label


def test_export_session_finds_a_session_whose_file_is_named_otherwise(ws: Workspace, tmp_path: Path) -> None:
    """`history session` finds a session by the id its lines carry; so does `export session`."""
    folder = tmp_path / "projects" / "-tmp"
    folder.mkdir(parents=True)
    line = json.dumps({"type": "user", "uuid": "u1", "sessionId": "lonely", "cwd": "/tmp",
                       "timestamp": "2026-01-01T00:00:00.000Z", "message": {"role": "user", "content": "hi"}}) + "\n"
    (folder / "named-otherwise.jsonl").write_text(line)
    (folder / "twice-a.jsonl").write_text(line.replace("lonely", "twice"))
    (folder / "twice-b.jsonl").write_text(line.replace("lonely", "twice").replace("u1", "u2"))
    ingest(ws, tmp_path / "projects")
    assert run_cli("history", "session", "lonely", root=ws.root).returncode == 0
    exported = run_cli("export", "session", "lonely", root=ws.root)
    assert exported.returncode == 0 and exported.stdout == line.encode()
    both = run_cli("export", "session", "twice", root=ws.root)
    assert both.returncode == 2 and b"in 2 transcripts" in both.stderr and b"export sessions DIR --session" in both.stderr


def test_the_walk_finds_every_transcript_once_in_path_order_and_follows_no_symlink(ws: Workspace,
                                                                                    tmp_path: Path) -> None:
    from chronicle.ingest import sources

    root = tmp_path / "root"
    outside = tmp_path / "outside"
    for rel in ("b/deep/er/x.jsonl", "a-b/y.jsonl", "a/z.jsonl", "a/b/w.jsonl"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(line({"type": "user", "uuid": rel}))
    outside.mkdir()
    (outside / "o.jsonl").write_bytes(line({"type": "user", "uuid": "o"}))
    (root / "linked.jsonl").symlink_to(outside / "o.jsonl")
    (root / "linked-folder").symlink_to(outside, target_is_directory=True)
    found = [f.path for f in sources.discover([root, root / "a"])]
    assert found == sorted(found) and len(set(found)) == len(found)  # Path order, each once
    assert [p.relative_to(root).as_posix() for p in found] == ["a/b/w.jsonl", "a/z.jsonl", "a-b/y.jsonl",
                                                               "b/deep/er/x.jsonl"]
    assert ingest(ws, root).files == 4
    # untouched since ingested: nothing read again; grown: read from its cursor
    assert ingest(ws, root).lines == 0
    with open(root / "a" / "z.jsonl", "ab") as fh:
        fh.write(line({"type": "user", "uuid": "z2"}))
    assert ingest(ws, root).lines == 1
