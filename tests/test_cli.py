"""The `chronicle` command as a user runs it: real processes, real exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import run_cli


def _events(n: int, start: int = 0) -> bytes:
    return b"".join(
        json.dumps({"type": "annotation", "stream": f"doc:{i % 2}", "event_id": f"c{i}", "target": f"doc:{i % 2}",
                    "key": "score", "value": str(i), "author": "cli"}).encode() + b"\n"
        for i in range(start, start + n))


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    run_cli("init", root=tmp_path, check=True)
    return tmp_path


def test_append_prints_seq_and_event_id_then_dedups(ws: Path) -> None:
    out = run_cli("append", root=ws, stdin=_events(3), check=True).stdout.decode().splitlines()
    assert out == ["1\tc0", "2\tc1", "3\tc2"]
    again = run_cli("append", "--json", root=ws, stdin=_events(1, 2), check=True).stdout.decode()
    assert json.loads(again) == {"seq": 3, "event_id": "c2", "duplicate": True}


@pytest.mark.parametrize("line, message", [
    (b'{"type":"annotation","stream":"d","target":"t","key":"k","value":5,"author":"a"}', "line 2: field 'value': Expected `str`, got `int`"),
    (b'{"type":"annotation","stream":"d","target":"t","key":"k","value":"v"}', "line 2: field 'author': required"),
    (b'{"type":"nope","stream":"d"}', "line 2: field 'type': unknown event type 'nope'"),
    (b'{"type":"annotation","stream":"d","seq":4}', "line 2: field 'seq': assigned by the log"),
    (b'{"type":"annotation","stream":"d", oops}', "line 2: not valid JSON"),
    (b'{"type":"annotation","stream":"d","target":"t","key":"k","value":"v","author":"a","colour":1}', "line 2: field 'colour': not a field"),
])
def test_malformed_append_names_line_and_field_and_writes_nothing(ws: Path, line: bytes, message: str) -> None:
    proc = run_cli("append", root=ws, stdin=_events(1) + line + b"\n")
    assert proc.returncode == 2
    assert message in proc.stderr.decode()
    assert run_cli("log", root=ws, check=True).stdout == b""


def test_log_filters_and_json(ws: Path) -> None:
    run_cli("append", root=ws, stdin=_events(6), check=True)
    run_cli("seal", root=ws, check=True)
    run_cli("append", root=ws, stdin=_events(2, 6), check=True)
    lines = run_cli("log", "--json", "--stream", "doc:1", "--from-seq", "3", root=ws, check=True).stdout.splitlines()
    events = [json.loads(x) for x in lines]
    assert [e["seq"] for e in events] == [4, 6, 8]
    assert events[0]["type"] == "annotation" and events[0]["v"] == 3 and events[0]["value"] == "3"
    assert len(run_cli("log", "--as-of", "5", root=ws, check=True).stdout.splitlines()) == 5
    assert run_cli("log", "--since", "12", root=ws).returncode == 2


def test_seal_rebuild_tables_show_verify_checkpoint(ws: Path) -> None:
    run_cli("append", root=ws, stdin=_events(10), check=True)
    assert b"sealed seqs 1..10" in run_cli("seal", root=ws, check=True).stdout
    assert b"nothing to seal" in run_cli("seal", root=ws, check=True).stdout
    rebuild = run_cli("rebuild", "--json", root=ws, check=True).stdout.splitlines()
    assert {"events_by_type", "ingest_errors", "usage"} <= {json.loads(x)["projection"] for x in rebuild}
    tables = [json.loads(x) for x in run_cli("tables", "--json", root=ws, check=True).stdout.splitlines()]
    assert {("events_by_type", "ok"), ("ingest_errors", "ok"), ("usage_daily", "ok")} <= {(t["table"], t["state"]) for t in tables}
    rows = [json.loads(x) for x in run_cli("show", "events_by_type", "--json", root=ws, check=True).stdout.splitlines()]
    assert rows[0]["type"] == "annotation" and rows[0]["events"] == 10
    assert run_cli("show", "events_by_type", "--csv", root=ws, check=True).stdout.startswith(b"day,type,events,bytes")
    missing = run_cli("show", "../../etc/passwd", root=ws)
    assert missing.returncode == 2 and b"known tables" in missing.stderr
    cp = run_cli("checkpoint", root=ws, check=True).stdout.decode().split()[0]
    assert cp.startswith("10:")
    run_cli("append", root=ws, stdin=_events(3, 10), check=True)
    ok = run_cli("verify", "--against", cp, root=ws)
    assert ok.returncode == 0 and b"only grown" in ok.stdout
    forged = run_cli("verify", "--against", "10:" + "0" * 64, root=ws)
    assert forged.returncode == 1 and b"differs from the checkpoint" in forged.stdout
    as_of = run_cli("rebuild", "--as-of", "4", root=ws, check=True)
    assert b"as-of/seq-4" in as_of.stdout
    assert (ws / "data" / "tables" / "as-of" / "seq-4" / "events_by_type.parquet").exists()


def test_verify_exit_code_names_the_damaged_file(ws: Path) -> None:
    run_cli("append", root=ws, stdin=_events(20), check=True)
    run_cli("seal", root=ws, check=True)
    seg = next((ws / "data" / "log" / "segments").glob("*.parquet"))
    data = bytearray(seg.read_bytes())
    data[100] ^= 1
    seg.write_bytes(bytes(data))
    proc = run_cli("verify", "--json", root=ws)
    assert proc.returncode == 1
    report = json.loads(proc.stdout)
    assert report["ok"] is False and report["problems"][0]["path"] == str(seg)
    assert report["problems"][0]["start"] <= 100 < report["problems"][0]["end"]


def test_commands_outside_a_workspace_exit_3(tmp_path: Path) -> None:
    proc = run_cli("stats", root=tmp_path)
    assert proc.returncode == 3 and b"chronicle init" in proc.stderr


def test_stats_and_help(ws: Path) -> None:
    run_cli("append", root=ws, stdin=_events(4), check=True)
    stats = json.loads(run_cli("stats", "--json", root=ws, check=True).stdout)
    assert stats["head_seq"] == 4 and stats["events_by_type"] == {"annotation": 4} and stats["wal_records"] == 4
    helptext = run_cli("--help", root=ws, check=True).stdout.decode()
    assert "examples:" in helptext and "exit codes" in helptext
    assert b"example:" in run_cli("verify", "--help", root=ws, check=True).stdout
