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
