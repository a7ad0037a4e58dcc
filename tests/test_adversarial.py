"""The log under attack: hostile input, damaged files, wrong clocks and
misbehaving providers. Each test reproduces a failure found by an adversarial
pass over the store, the ingesters, the runner and the projections, run as a
user would (the CLI as a real process, real files, real damage)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import polars as pl
import pytest

from chronicle.store import EventLog
from conftest import note, run_cli

BIG = 9223372036854775808  # 2**63: one past int64


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    run_cli("init", root=tmp_path, check=True)
    return tmp_path


def _notes(n: int, start: int = 0) -> bytes:
    return b"".join(
        json.dumps({"type": "annotation", "stream": f"doc:{i}", "event_id": f"n{i}", "target": f"doc:{i}",
                    "key": "k", "value": str(i), "author": "t"}).encode() + b"\n"
        for i in range(start, start + n)
    )


def _transcript(path: Path, lines: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(json.dumps(x).encode() + b"\n" for x in lines))


def _call(uuid: str, parent: str | None, msg: str, tokens: int) -> dict:
    return {"type": "assistant", "uuid": uuid, "parentUuid": parent, "sessionId": "s1",
            "timestamp": "2026-01-01T00:00:01Z", "requestId": f"r-{msg}",
            "message": {"id": msg, "role": "assistant", "model": "claude-sonnet-4-5",
                        "usage": {"input_tokens": tokens, "output_tokens": 3}}}


# ------------------------------------------------------------ 1. integers


def test_append_refuses_an_integer_beyond_int64_naming_line_and_field(ws: Path) -> None:
    line = json.dumps({"type": "source.error", "stream": "d", "path": "p", "error": "e", "line_no": BIG})
    proc = run_cli("append", root=ws, stdin=_notes(1) + line.encode() + b"\n")
    assert proc.returncode == 2
    err = proc.stderr.decode()
    assert "line 2" in err and "line_no" in err and "Traceback" not in err
    # nothing written, and the log still seals and reads
    run_cli("seal", root=ws, check=True)
    assert run_cli("log", "--json", root=ws, check=True).stdout == b""


def test_the_api_refuses_an_integer_beyond_int64(tmp_path: Path) -> None:
    from chronicle.events import SourceError
    from chronicle.store import InvalidEvent

    with EventLog.init(tmp_path / "log") as lg:
        with pytest.raises(InvalidEvent, match="line_no"):
            lg.append([SourceError(stream="d", path="p", error="e", line_no=BIG)])
        lg.append([note(1)])
        lg.seal()
        assert lg.snapshot().head == 1


def test_a_transcript_token_count_beyond_int64_is_a_line_error_and_ingest_goes_on(ws: Path) -> None:
    root = ws / "claude"
    _transcript(root / "p" / "a.jsonl", [_call("a1", None, "m1", BIG), _call("a2", "a1", "m2", 5)])
    _transcript(root / "p" / "b.jsonl", [_call("b1", None, "m3", 7)])
    proc = run_cli("ingest", "sessions", str(root), "--json", root=ws)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["files"] == 2 and summary["errors"] == 1
    assert any("a.jsonl:1" in p and "input_tokens" in p for p in summary["problems"])
    run_cli("rebuild", root=ws, check=True)
    calls = json.loads("[" + ",".join(run_cli("show", "api_calls", "--json", root=ws, check=True)
                                      .stdout.decode().splitlines()) + "]")
    assert sorted(c["message_id"] for c in calls) == ["m2", "m3"]
    errors = run_cli("show", "ingest_errors", "--json", root=ws, check=True).stdout.decode()
    assert "input_tokens" in errors


# --------------------------------------------------------- 8. JSON fields


@pytest.mark.parametrize("line", [
    {"type": "cohort.defined", "stream": "cohort:x", "cohort_id": "x", "spec_sha256": "0", "spec": "",
     "membership_json": "{"},
    {"type": "git.commit", "stream": "repo:r", "repo": "r", "sha": "a" * 40, "parents": [], "author_name": "a",
     "author_email": "a", "authored_at": "2026-01-01T00:00:00Z", "committer_name": "a", "committer_email": "a",
     "committed_at": "2026-01-01T00:00:00Z", "message": "m", "files_json": "nope"},
])
def test_append_refuses_a_json_field_that_is_not_json(ws: Path, line: dict) -> None:
    proc = run_cli("append", root=ws, stdin=json.dumps(line).encode() + b"\n")
    assert proc.returncode == 2, proc.stderr
    assert "_json" in proc.stderr.decode() and "not valid JSON" in proc.stderr.decode()


# ------------------------------------------------- 2, 3. lost acknowledged events


def _sealed_twice(ws: Path) -> None:
    run_cli("append", root=ws, stdin=_notes(10), check=True)
    run_cli("seal", root=ws, check=True)
    run_cli("append", root=ws, stdin=_notes(10, 10), check=True)
    run_cli("seal", root=ws, check=True)


@pytest.mark.parametrize("cut", ["5 bytes", "the whole last line"])
def test_a_shortened_manifest_is_corruption_and_no_seq_is_reused(ws: Path, cut: str) -> None:
    _sealed_twice(ws)
    manifest = ws / "data" / "log" / "MANIFEST"
    data = manifest.read_bytes()
    keep = len(data) - 5 if cut == "5 bytes" else data.rstrip(b"\n").rfind(b"\n") + 1
    manifest.write_bytes(data[:keep])
    proc = run_cli("verify", root=ws)
    assert proc.returncode == 1 and "MANIFEST" in proc.stdout.decode() and "11..20" in proc.stdout.decode()
    proc = run_cli("append", root=ws, stdin=_notes(1, 100))
    assert proc.returncode == 3 and "Traceback" not in proc.stderr.decode()
    assert "MANIFEST" in proc.stderr.decode()
    for verb in (("log",), ("rebuild",), ("seal",)):
        proc = run_cli(*verb, root=ws)
        assert proc.returncode == 3, (verb, proc.stderr)
    manifest.write_bytes(data)  # put back, the log is whole again: nothing was reused
    assert run_cli("verify", root=ws).returncode == 0
    assert run_cli("append", root=ws, stdin=_notes(1, 100), check=True).stdout.startswith(b"21\t")


def test_a_lost_bulk_load_entry_is_corruption(tmp_path: Path) -> None:
    import pyarrow as pa

    from chronicle.store import CorruptionError

    with EventLog.init(tmp_path / "log") as lg:
        lg.append([note(i) for i in range(5)])
        lg.append_table("annotation", pa.table({"stream": ["s"] * 5, "target": ["t"] * 5, "key": ["k"] * 5,
                                                "value": [str(i) for i in range(5)], "author": ["a"] * 5}))
        manifest = lg.manifest_path
        data = manifest.read_bytes()
        manifest.write_bytes(data[: data.rstrip(b"\n").rfind(b"\n") + 1])  # the bulk load's entry
    with EventLog(tmp_path / "log") as lg:
        with pytest.raises(CorruptionError, match="6..10"):
            lg.append([note(9)])
        with pytest.raises(CorruptionError):
            lg.snapshot()


def test_a_flipped_byte_in_the_last_acknowledged_wal_frame_is_corruption_never_cut(ws: Path) -> None:
    run_cli("append", root=ws, stdin=_notes(5), check=True)
    run_cli("append", root=ws, stdin=_notes(5, 5), check=True)  # the last frame: seqs 6..10, acknowledged
    wal = sorted((ws / "data" / "log" / "wal").glob("*.wal"))[-1]
    data = bytearray(wal.read_bytes())
    end = len(data.rstrip(b"\0"))
    data[end - 3] ^= 0xFF
    wal.write_bytes(bytes(data))
    proc = run_cli("verify", root=ws)
    assert proc.returncode == 1 and "acknowledged" in proc.stdout.decode()
    proc = run_cli("append", root=ws, stdin=_notes(1, 100))
    assert proc.returncode == 3 and "acknowledged" in proc.stderr.decode()
    assert run_cli("log", root=ws).returncode == 3
    assert wal.read_bytes() == bytes(data), "an acknowledged frame must never be cut off"


# -------------------------------------------------- 4. readers check segments


def test_no_single_byte_flip_of_a_segment_reaches_a_reader(tmp_path: Path) -> None:
    import random

    from chronicle.store import CorruptionError

    with EventLog.init(tmp_path / "log") as lg:
        lg.append([note(i, stream=f"doc:{i % 3}") for i in range(40)])
        lg.seal()
        segment = next((tmp_path / "log" / "segments").glob("*.parquet"))
        lg.snapshot().envelope().collect()  # checked once, and remembered in VERIFIED
    original = segment.read_bytes()
    rng = random.Random(7)
    for pos in sorted(rng.sample(range(len(original)), 150)):
        flipped = bytearray(original)
        flipped[pos] ^= 1 << rng.randrange(8)
        segment.write_bytes(bytes(flipped))
        with EventLog(tmp_path / "log") as lg, pytest.raises(CorruptionError, match=segment.name):
            list(lg.snapshot().events())
    segment.write_bytes(original)
    with EventLog(tmp_path / "log") as lg:
        assert [e.seq for e in lg.snapshot().events()] == list(range(1, 41))


def test_a_damaged_or_deleted_segment_stops_every_reader_with_exit_3(ws: Path) -> None:
    run_cli("append", root=ws, stdin=_notes(10), check=True)
    run_cli("seal", root=ws, check=True)
    run_cli("rebuild", root=ws, check=True)
    segment = next((ws / "data" / "log" / "segments").glob("*.parquet"))
    data = bytearray(segment.read_bytes())
    data[len(data) - 20] ^= 0x40  # in the footer
    segment.write_bytes(bytes(data))
    for verb in (("log",), ("rebuild", "--full"), ("append",)):
        proc = run_cli(*verb, root=ws, stdin=_notes(1, 50))
        err = proc.stderr.decode()
        assert proc.returncode == 3 and segment.name in err and "Traceback" not in err, (verb, err)
        assert len(err.strip().splitlines()) == 1
    segment.unlink()
    proc = run_cli("log", root=ws)
    assert proc.returncode == 3 and "missing" in proc.stderr.decode() and "Traceback" not in proc.stderr.decode()


# ------------------------------------------------ 12, 13. damage and tracebacks


def test_a_damaged_table_is_rebuilt_and_tables_says_damaged(ws: Path) -> None:
    run_cli("append", root=ws, stdin=_notes(6), check=True)
    run_cli("rebuild", root=ws, check=True)
    table = ws / "data" / "tables" / "events_by_type.parquet"
    good = table.read_bytes()
    table.write_bytes(good[: len(good) // 2] + bytes(len(good) - len(good) // 2))
    listed = [json.loads(x) for x in run_cli("tables", "--json", root=ws, check=True).stdout.splitlines()]
    assert {r["table"]: r["state"] for r in listed}["events_by_type"] == "damaged"
    proc = run_cli("show", "events_by_type", "--stale", root=ws)
    assert proc.returncode == 3 and "Traceback" not in proc.stderr.decode()
    assert len(proc.stderr.decode().strip().splitlines()) == 1
    out = run_cli("rebuild", "events_by_type", "--json", root=ws, check=True).stdout
    assert json.loads(out)["action"] == "built"
    assert pl.read_parquet(table)["events"].sum() == 6
    shown = run_cli("show", "events_by_type", "--json", root=ws, check=True).stdout
    assert json.loads(shown.splitlines()[0])["events"] == 6


def test_a_damaged_table_is_rebuilt_by_show(ws: Path) -> None:
    run_cli("append", root=ws, stdin=_notes(3), check=True)
    run_cli("rebuild", root=ws, check=True)
    table = ws / "data" / "tables" / "events_by_type.parquet"
    data = bytearray(table.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, new mtime: caught by the sha256
    table.write_bytes(bytes(data))
    proc = run_cli("show", "events_by_type", "--json", root=ws)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.splitlines()[0])["events"] == 3


def test_show_is_current_without_a_rebuild(ws: Path) -> None:
    run_cli("append", root=ws, stdin=_notes(2), check=True)
    run_cli("rebuild", root=ws, check=True)
    run_cli("append", root=ws, stdin=_notes(3, 2), check=True)
    listed = [json.loads(x) for x in run_cli("tables", "--json", root=ws, check=True).stdout.splitlines()]
    assert {r["table"]: r["state"] for r in listed}["events_by_type"] == "behind by 3"
    shown = run_cli("show", "events_by_type", "--json", root=ws, check=True).stdout
    assert json.loads(shown.splitlines()[0])["events"] == 5


@pytest.mark.parametrize("line", [
    b'{"type":"annotation","stream":"d","target":"t","key":"k","author":"a","value":' + b"[" * 100_000
    + b"]" * 100_000 + b"}",
    json.dumps({"type": "git.commit", "stream": "r", "repo": "r", "sha": "a", "parents": [], "author_name": "a",
                "author_email": "a", "authored_at": "9999-12-31T23:59:59-23:59", "committer_name": "a",
                "committer_email": "a", "committed_at": "2026-01-01T00:00:00Z", "message": "m",
                "files_json": "[]"}).encode(),
], ids=["100k-deep", "time-out-of-range"])
def test_hostile_append_input_is_one_line_exit_2(ws: Path, line: bytes) -> None:
    proc = run_cli("append", root=ws, stdin=_notes(1) + line + b"\n")
    err = proc.stderr.decode()
    assert proc.returncode == 2 and "line 2" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert run_cli("log", root=ws, check=True).stdout == b""


def test_a_wal_that_does_not_follow_the_manifest_is_damage_not_changing_too_fast(ws: Path) -> None:
    run_cli("append", root=ws, stdin=_notes(3), check=True)
    run_cli("seal", root=ws, check=True)
    run_cli("append", root=ws, stdin=_notes(3, 3), check=True)  # seqs 4..6 in the WAL
    (ws / "data" / "log" / "MANIFEST").write_bytes(b"")  # the entry for 1..3 is gone
    (ws / "data" / "log" / "COMMITTED").unlink()
    proc = run_cli("log", root=ws)
    err = proc.stderr.decode()
    assert proc.returncode == 3 and "MANIFEST" in err and "too fast" not in err


# ---------------------------------------------- 10, 14. odd files and held locks


def test_a_same_length_edit_of_an_earlier_line_is_a_rewrite(ws: Path) -> None:
    root = ws / "claude"
    transcript = root / "p" / "a.jsonl"
    _transcript(transcript, [_call(f"a{i}", None, f"m{i}", 100 + i) for i in range(200)])  # well past 4 KiB
    run_cli("ingest", "sessions", str(root), root=ws, check=True)
    again = json.loads(run_cli("ingest", "sessions", str(root), "--json", root=ws, check=True).stdout)
    assert again["rewritten"] == 0 and again["lines"] == 0
    data = transcript.read_bytes()
    edited = data.replace(b'"input_tokens": 100,', b'"input_tokens": 999,', 1)
    assert len(edited) == len(data) and edited != data
    transcript.write_bytes(edited)
    summary = json.loads(run_cli("ingest", "sessions", str(root), "--json", root=ws, check=True).stdout)
    assert summary["rewritten"] == 1
    out = ws / "restored"
    run_cli("export", "sessions", str(out), root=ws, check=True)
    assert (out / "p" / "a.jsonl").read_bytes() == edited


def test_a_fifo_named_like_a_transcript_is_skipped_and_recorded(ws: Path) -> None:
    root = ws / "claude"
    _transcript(root / "p" / "a.jsonl", [_call("a1", None, "m1", 5)])
    os.mkfifo(root / "p" / "b.jsonl")
    proc = run_cli("ingest", "sessions", str(root), "--json", root=ws)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["lines"] == 1 and any("b.jsonl" in p and "regular file" in p for p in summary["problems"])
    (ws / "chronicle.toml").write_text(f'[watch]\nclaude_roots = ["{root}"]\ngit_repos = []\n')
    proc = run_cli("watch", "--once", root=ws)  # the daemon's pass does not hang either
    assert proc.returncode == 0, proc.stderr


def test_a_held_lock_is_named_and_wait_gives_up(ws: Path) -> None:
    import fcntl
    import time

    run_cli("append", root=ws, stdin=_notes(1), check=True)
    fd = os.open(ws / "data" / "log" / "LOCK", os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)  # a process that stopped while holding it
    try:
        started = time.monotonic()
        proc = run_cli("--wait", "2", "append", root=ws, stdin=_notes(1, 1))
        waited = time.monotonic() - started
    finally:
        os.close(fd)
    err = proc.stderr.decode()
    assert proc.returncode == 3 and f"pid {os.getpid()}" in err and "gave up" in err, err
    assert "waiting for" in err and waited >= 2
    assert run_cli("append", root=ws, stdin=_notes(1, 1), check=True).stdout.startswith(b"2\t")


# --------------------------------------------------------- 5. unique ids


def test_an_id_taken_by_append_is_not_reused_by_ingest_and_verify_checks_uniqueness(ws: Path) -> None:
    from chronicle.ingest.event_ids import line_id, path_key

    root = ws / "claude"
    transcript = (root / "p" / "a.jsonl").resolve()
    _transcript(transcript, [_call("a1", None, "m1", 5), _call("a2", "a1", "m2", 6)])
    stolen = line_id(path_key(str(transcript)), 0, 0)
    line = {"type": "annotation", "stream": "doc:x", "event_id": stolen, "target": "doc:x", "key": "k",
            "value": "v", "author": "mallory"}
    run_cli("append", root=ws, stdin=json.dumps(line).encode() + b"\n", check=True)
    run_cli("ingest", "sessions", str(root), root=ws, check=True)
    assert run_cli("verify", "--deep", root=ws).returncode == 0
    events = [json.loads(x) for x in run_cli("log", "--json", root=ws, check=True).stdout.splitlines()]
    ids = [e["event_id"] for e in events]
    assert len(ids) == len(set(ids))
    lines = [e for e in events if e["type"] == "session.line"]
    assert len(lines) == 2 and lines[0]["event_id"] == stolen + "~2"
    out = ws / "restored"
    run_cli("export", "sessions", str(out), root=ws, check=True)
    assert (out / "p" / "a.jsonl").read_bytes() == transcript.read_bytes()


def test_verify_finds_a_repeated_event_id(tmp_path: Path) -> None:
    import pyarrow as pa

    from chronicle.store import integrity

    with EventLog.init(tmp_path / "log") as lg:
        lg.append([note(1)])
        lg.seal()
        # a writer that skipped the check (an older chronicle): the same id again in a bulk load
        prepared = __import__("chronicle.store.log", fromlist=["prepare_tables"]).prepare_tables(
            {"annotation": pa.table({"stream": ["s"], "event_id": ["e1"], "target": ["t"], "key": ["k"],
                                     "value": ["other"], "author": ["a"]})})
        lg.id_index.existing = lambda held, m, ids, h: {}  # simulate the old, unchecked path
        lg.append_prepared(prepared)
    with EventLog(tmp_path / "log") as lg:
        report = integrity.verify(lg)
    assert not report.ok and "'e1'" in str(report.problems[0]) and "[1, 2]" in str(report.problems[0])


# ------------------------------------------------------------- 9. clocks


def test_a_wrong_clock_is_recorded_as_it_reads_and_reported_not_carried(tmp_path: Path, monkeypatch) -> None:
    import time as time_module

    from chronicle.store import log as log_module

    real = time_module.time_ns
    year_2099 = 4_070_908_800 * 10**9
    with EventLog.init(tmp_path / "log") as lg:
        lg.append([note(1)])
        monkeypatch.setattr(log_module.time, "time_ns", lambda: year_2099)
        lg.append([note(2)])
        monkeypatch.setattr(log_module.time, "time_ns", real)
    with EventLog(tmp_path / "log") as lg:  # another process, with a right clock
        lg.append([note(3)])
        lg.append([note(4)])
        events = list(lg.snapshot().events())
    notes = {e.value: e for e in events if e.type_name() == "annotation"}
    assert [e.seq for e in notes.values()] == [1, 2, 3, 5]  # the step is recorded beside note 3
    assert notes["2"].recorded_at.year == 2099
    assert notes["3"].recorded_at.year < 2099 and notes["4"].recorded_at.year < 2099
    steps = [e for e in events if e.type_name() == "clock.step"]
    assert len(steps) == 1, "reported once, not on every later append"
    assert steps[0].step_us < 0 and steps[0].latest_recorded_at.year == 2099
    snap = EventLog(tmp_path / "log").snapshot()
    assert snap.seq_at(notes["4"].recorded_at) == snap.head  # the 2099 event does not hide later ones


# -------------------------------------------------- 11. (session, uuid) keys


def test_a_uuid_reused_by_another_session_does_not_take_the_first_sessions_message(ws: Path) -> None:
    root = ws / "claude"

    def user(session: str, text: str) -> dict:
        return {"type": "user", "uuid": "same-uuid", "parentUuid": None, "sessionId": session,
                "timestamp": "2026-01-01T00:00:00Z", "message": {"role": "user", "content": text}}

    _transcript(root / "p" / "s1.jsonl", [user("s1", "first session's words")])
    _transcript(root / "p" / "s2.jsonl", [user("s2", "an earlier copy"), user("s2", "second session's words")])
    run_cli("ingest", "sessions", str(root), root=ws, check=True)
    rows = [json.loads(x) for x in run_cli("show", "messages", "--json", root=ws, check=True).stdout.splitlines()]
    by_session = {r["session_id"]: r for r in rows}
    assert sorted(by_session) == ["s1", "s2"] and len(rows) == 2
    assert "first session" in by_session["s1"]["text"]
    assert "second session" in by_session["s2"]["text"], "the latest recording of (s2, uuid) counts"


# ----------------------------------------- 6, 7. providers that leak or misbehave


def _key_forms(secret: str) -> list[bytes]:
    import base64
    from urllib.parse import quote

    return [secret.encode(), quote(secret, safe="").encode(), secret[3:15].encode(),
            base64.b64encode(f"user:{secret}".encode())[8:-8]]


def test_a_key_echoed_in_headers_encoded_or_in_pieces_is_written_nowhere(tmp_path: Path) -> None:
    from experiment_helpers import SECRET, Server, chronicle, make_workspace, provider_toml

    server = Server("--fault-rate", "1.0", "--faults", "leak", "--require-key", SECRET)
    try:
        ws = make_workspace(tmp_path, provider_toml(server.url))
        run = chronicle("run", "demo", "--provider", "fake", "--stage", "draft", root=ws)
        assert run.returncode == 0, run.stderr
        assert any(r["fault"] == "leak" for r in server.requests())
        outputs = run.stdout + run.stderr
        for verb in (("rebuild",), ("docs",), ("show", "documents", "--json"), ("log", "--json")):
            done = chronicle(*verb, root=ws)
            assert done.returncode == 0, (verb, done.stderr)
            outputs += done.stdout + done.stderr
    finally:
        server.stop()
    forms = _key_forms(SECRET)
    for form in forms:
        assert form.decode() not in outputs
    scanned = 0
    for path in ws.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            scanned += 1
            for form in forms:
                assert form not in data, f"{form!r} written to {path}"
    assert scanned > 20
    events = EventLog(ws / "data" / "log").snapshot()  # decoded, not only as compressed bytes
    for t in events.types():
        for column, values in events.frame(t).collect().to_dict().items():
            if values.dtype in (pl.String, pl.Binary):
                blob = b"\n".join(v if isinstance(v, bytes) else v.encode() for v in values.drop_nulls())
                for form in forms:
                    assert form not in blob, f"{form!r} in {t}.{column}"
    responses = events.frame("llm.response").collect()
    assert (responses["provider_request_id"] == "[redacted]").any()


def test_hostile_response_shapes_are_each_recorded_and_none_costs_another_key(tmp_path: Path) -> None:
    from experiment_helpers import SECRET, Server, chronicle, frames, make_workspace, provider_toml

    server = Server("--fault-rate", "1.0", "--faults", "oddtypes,parts,number,soon,huge", "--require-key", SECRET)
    try:
        ws = make_workspace(tmp_path, provider_toml(server.url))
        run = chronicle("run", "demo", "--provider", "fake", "--stage", "draft", "--json", root=ws)
        assert run.returncode == 0, run.stderr
        sent = len(server.requests())
        f = frames(ws)
        prompts, responses = f["llm.prompt"], f["llm.response"]
        ok = responses.filter(pl.col("status") == "ok")
        keys = prompts.join(ok.select("doc_id"), on="doc_id")["logical_key_id"]
        assert keys.n_unique() == prompts["logical_key_id"].n_unique() == json.loads(run.stdout)["ok"]
        errors = " ".join(responses["error"].drop_nulls().to_list())
        assert "unexpected shape" in errors and "HTTP 429" in errors
        assert set(ok["finish_reason"].drop_nulls()) >= {"stop", "7"}
        assert ok.filter(pl.col("text").str.contains("<essay>")).height == ok.height
        again = chronicle("run", "demo", "--provider", "fake", "--stage", "draft", root=ws)
        assert again.returncode == 0 and len(server.requests()) == sent, "paid work is never sent again"
    finally:
        server.stop()


def test_retry_after_is_capped_with_a_log_line(tmp_path: Path) -> None:
    from experiment_helpers import SECRET, Server, chronicle, make_workspace, provider_toml

    server = Server("--fault-rate", "1.0", "--faults", "429", "--retry-after", "86400", "--require-key", SECRET)
    try:
        ws = make_workspace(tmp_path, provider_toml(server.url, max_retry_after_seconds=0.2))
        run = chronicle("run", "demo", "--provider", "fake", "--stage", "draft", "--limit", "2", root=ws, timeout=60)
        assert run.returncode == 0, run.stderr
        assert "86400" in run.stderr and "max_retry_after_seconds" in run.stderr
    finally:
        server.stop()


def test_the_bulk_path_refuses_a_json_field_that_is_not_json(tmp_path: Path) -> None:
    import pyarrow as pa

    from chronicle.store import InvalidEvent

    with EventLog.init(tmp_path / "log") as lg, pytest.raises(InvalidEvent, match="membership_json"):
        lg.append_table("cohort.defined", pa.table({"stream": ["c"], "cohort_id": ["c"], "spec_sha256": ["0"],
                                                    "spec": [""], "membership_json": ["{"]}))


def test_json_of_the_wrong_shape_is_an_error_row_and_the_rest_builds(ws: Path) -> None:
    bad = [
        {"type": "cohort.defined", "stream": "cohort:x", "cohort_id": "x", "spec_sha256": "0", "spec": "",
         "membership_json": "5"},
        {"type": "git.commit", "stream": "repo:r", "repo": "/r", "sha": "a" * 40, "parents": [], "author_name": "a",
         "author_email": "a", "authored_at": "2026-01-01T00:00:00Z", "committer_name": "a", "committer_email": "a",
         "committed_at": "2026-01-01T00:00:00Z", "message": "bad", "files_json": '{"not": "a list"}'},
        {"type": "git.commit", "stream": "repo:r", "repo": "/r", "sha": "b" * 40, "parents": [], "author_name": "a",
         "author_email": "a", "authored_at": "2026-01-01T00:00:00Z", "committer_name": "a", "committer_email": "a",
         "committed_at": "2026-01-01T00:00:01Z", "message": "good",
         "files_json": '[{"path": "x.py", "status": "M", "added": 1, "removed": 0}]'},
    ]
    run_cli("append", root=ws, stdin=b"".join(json.dumps(x).encode() + b"\n" for x in bad), check=True)
    proc = run_cli("rebuild", root=ws)
    assert proc.returncode == 0, proc.stderr
    commits = [json.loads(x) for x in run_cli("show", "commits", "--json", root=ws, check=True).stdout.splitlines()]
    assert [c["subject"] for c in commits] == ["good"]
    errors = run_cli("show", "ingest_errors", "--json", root=ws, check=True).stdout.decode()
    assert "membership_json is not a list of members" in errors and "files_json is not a list of files" in errors


# ------------------------------------------------------- 16. streaming append


def test_append_stream_acknowledges_each_line_as_it_arrives(ws: Path) -> None:
    import subprocess
    import sys

    env = {**os.environ, "CHRONICLE_ROOT": str(ws)}
    proc = subprocess.Popen([sys.executable, "-m", "chronicle", "append", "--stream"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        for i in range(3):
            proc.stdin.write(_notes(1, i))
            proc.stdin.flush()
            ack = proc.stdout.readline()  # before the producer ends: durable and acknowledged now
            assert ack.startswith(f"{i + 1}\t".encode()), ack
            with EventLog(ws / "data" / "log") as lg:
                assert lg.snapshot().head == i + 1
        proc.stdin.write(_notes(1, 3) + b"{not json\n" + _notes(1, 4))
        proc.stdin.close()
        rest = proc.stdout.read().decode()
        assert proc.wait(timeout=30) == 2
    finally:
        proc.kill()
    assert rest.startswith("4\t") and len(rest.splitlines()) == 1
    err = proc.stderr.read().decode()
    assert "line 5" in err and "not valid JSON" in err
    with EventLog(ws / "data" / "log") as lg:
        assert lg.snapshot().head == 4


def test_a_full_disk_during_rebuild_is_one_line_exit_3_and_the_tables_stand(ws: Path) -> None:
    import resource
    import shutil
    import signal
    import subprocess
    import sys

    from conftest import ROOT

    shutil.copytree(ROOT / "data" / "examples" / "claude-projects", ws / "claude")
    run_cli("ingest", "sessions", str(ws / "claude"), root=ws, check=True)
    run_cli("rebuild", "events_by_type", root=ws, check=True)
    before = (ws / "data" / "tables" / "events_by_type.parquet").read_bytes()

    def small_disk() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (1500, 1500))

    proc = subprocess.run([sys.executable, "-m", "chronicle", "rebuild", "--full"], capture_output=True,
                          env={**os.environ, "CHRONICLE_ROOT": str(ws)}, preexec_fn=small_disk, timeout=120)
    err = proc.stderr.decode()
    assert proc.returncode == 3, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1 and "disk full" in err
    assert (ws / "data" / "tables" / "events_by_type.parquet").read_bytes() == before
    assert run_cli("rebuild", root=ws).returncode == 0  # with room again, it all builds


def test_tables_ahead_of_the_log_are_corruption(tmp_path: Path) -> None:
    import shutil

    a, b = tmp_path / "a", tmp_path / "b"
    for ws, n in ((a, 10), (b, 5)):
        run_cli("init", root=ws, check=True)
        run_cli("append", root=ws, stdin=_notes(n), check=True)
    run_cli("rebuild", root=a, check=True)
    shutil.rmtree(b / "data" / "tables")
    shutil.copytree(a / "data" / "tables", b / "data" / "tables")  # checkpoints at seq 10 over a log of 5
    proc = run_cli("rebuild", root=b)
    err = proc.stderr.decode()
    assert proc.returncode == 3 and "_checkpoints.json" in err and "beyond the log's head 5" in err
    listed = [json.loads(x) for x in run_cli("tables", "--json", root=b, check=True).stdout.splitlines()]
    assert {r["state"] for r in listed if r["table"] == "events_by_type"} == {"ahead of the log"}
