"""Redaction: a secret's bytes taken out of the log itself, the log still verifiable.

The store's promise (``chronicle.store.redaction``): values are replaced, the
event hashes, seqs and every checkpoint printed before stay true, ``verify``
passes and fails again if the redacted bytes are touched, and a redaction
killed at any instant leaves the log as it was or redacted, never half of it.
The command's (``chronicle secrets redact``): no trace of the value in any file
of the workspace afterwards, and bad input changes nothing.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest

from chronicle.events import Annotation
from chronicle.store import EventLog, StoreError
from chronicle.store.integrity import checkpoint, verify
from chronicle.store.redaction import Change

from conftest import ROOT, kill_at_random
import test_secrets
from test_secrets import FAKE, SID, _no_secret_in, chronicle

TRIALS = int(os.environ.get("CHRONICLE_REDACT_CRASH_TRIALS", "16"))
leaky = test_secrets.leaky  # the workspace whose transcript leaks every kind of secret (a fixture)


def _log(path: Path, events: int = 60, seal_every: int = 20) -> EventLog:
    """A log whose annotations say ``secret <seq>``: some sealed in several segments, the last in the WAL."""
    log = EventLog.init(path)
    for start in range(0, events, seal_every):
        log.append([Annotation(stream=f"doc:{i % 3}", event_id=f"e{i}", target="t", key="k",
                               value=f"secret {i + 1}", author="a") for i in range(start, start + seal_every)])
        if start + seal_every < events:
            log.seal()
    return log


def _values(log: EventLog) -> dict[int, str]:
    return dict(log.snapshot().frame("annotation", ["seq", "value"]).collect().rows())


# ------------------------------------------------------------------ the store


def test_values_are_replaced_and_the_log_verifies_against_checkpoints_taken_before(tmp_path: Path) -> None:
    log = _log(tmp_path / "log")
    before = checkpoint(log)
    old_files = set(log.storage.names())
    done = log.redact(lambda snap: [Change("annotation", s, {"value": "[redacted:x]"}) for s in (3, 25, 59)],
                      "ada", ["s1"])
    assert done is not None and [r.seq for r in done.rows] == [3, 25, 59] and done.by == "ada"
    values = _values(log)
    assert {s: values[s] for s in (3, 25, 59)} == {3: "[redacted:x]", 25: "[redacted:x]", 59: "[redacted:x]"}
    assert all(values[s] == f"secret {s}" for s in values if s not in (3, 25, 59))
    assert sorted(log.snapshot().redacted) == [3, 25, 59]  # the flag a reader sees
    report = verify(log, at_seq=before.seq)
    assert report.ok and not report.problems, [str(p) for p in report.problems]
    assert report.hash_at == before.head_hash and report.head_hash == before.head_hash and report.redactions == 1
    assert checkpoint(log).head_hash == before.head_hash
    names = set(log.storage.names())
    # the WAL was sealed first; the files that held the values are gone, their copies named after the redaction
    assert log.snapshot().wal == []
    replaced = {rf.replaces for rf in done.files}
    assert replaced and not replaced & names and all(rf.file.name.endswith(f".r{done.n}.parquet") for rf in done.files)
    assert old_files - replaced <= names
    for name in names:
        table = pq.read_table(log.storage.path(name), columns=["value"])
        assert all(v not in table.column("value").to_pylist() for v in ("secret 3", "secret 25", "secret 59")), name


def test_a_redacted_file_altered_again_fails_verify(tmp_path: Path) -> None:
    log = _log(tmp_path / "log")
    log.redact(lambda snap: [Change("annotation", 5, {"value": "[redacted:x]"})], "ada", ["s1"])
    [name] = [n for n in log.storage.names() if ".r" in n]
    path = log.storage.path(name)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    report = verify(log)
    assert not report.ok and name in str(report.problems[0]) and "sha256" in report.problems[0].reason


def test_a_second_redaction_of_one_file_is_checked_against_the_latest(tmp_path: Path) -> None:
    log = _log(tmp_path / "log")
    log.redact(lambda snap: [Change("annotation", 5, {"value": "[redacted:one]"})], "ada", ["s1"])
    log.redact(lambda snap: [Change("annotation", 5, {"value": "[redacted:two]"}),
                             Change("annotation", 6, {"value": "[redacted:two]"})], "ada", ["s2"])
    assert _values(log)[5] == "[redacted:two]" and _values(log)[6] == "[redacted:two]"
    report = verify(log)
    assert report.ok and report.redactions == 2, [str(p) for p in report.problems]
    assert len([n for n in log.storage.names() if n.startswith("seg-000000000001-")]) == 1
    log.append([Annotation(stream="doc:x", target="t", key="k", value="after", author="a")])
    log.seal()  # a seal after a redaction follows its MANIFEST line
    assert verify(log).ok and _values(log)[61] == "after"


def test_a_redaction_of_what_is_not_there_or_may_not_change_changes_nothing(tmp_path: Path) -> None:
    log = _log(tmp_path / "log")
    log.seal()  # (a redaction seals the WAL first)
    manifest, names = log.manifest_path.read_bytes(), log.storage.names()
    for changes, says in (([Change("annotation", 999, {"value": "x"})], "no sealed annotation event at seq 999"),
                          ([Change("annotation", 3, {"event_id": "x"})], "may not change event_id"),
                          ([Change("annotation", 3, {"nope": "x"})], "no field 'nope'"),
                          ([Change("annotation", 3, {"value": 7})], "cannot hold")):
        with pytest.raises(StoreError, match=says):
            log.redact(lambda snap, c=changes: c, "ada", [])
        assert log.manifest_path.read_bytes() == manifest and log.storage.names() == names
    assert log.redact(lambda snap: [], "ada", []) is None and log.manifest_path.read_bytes() == manifest


def test_appends_wait_for_a_redaction_and_land_after_it(tmp_path: Path) -> None:
    log = _log(tmp_path / "log")
    other = EventLog(tmp_path / "log")
    landed = []

    def plan(snap):
        t = threading.Thread(target=lambda: landed.extend(
            other.append([Annotation(stream="doc:y", target="t", key="k", value="during", author="b")])))
        t.start()
        time.sleep(0.3)
        assert not landed  # the redaction holds the log's lock
        plan.thread = t
        return [Change("annotation", 1, {"value": "[redacted:x]"})]

    log.redact(plan, "ada", [])
    plan.thread.join()
    assert landed[0].seq == 61 and verify(log).ok and _values(log)[61] == "during"


def _redact_and_kill(path: Path, seed: int, first: int, rng: random.Random) -> list[tuple[int, list[int]]]:
    done: list[tuple[int, list[int]]] = []

    def returned(line: str) -> None:
        k, *seqs = map(int, line.split())
        done.append((k, seqs))

    kill_at_random([sys.executable, str(ROOT / "tests" / "redact_child.py"), str(path), str(seed), str(first)],
                   rng.uniform(0.01, 0.6), returned)
    return done


def test_sigkill_at_random_instants_of_redactions_leaves_the_log_whole(tmp_path: Path) -> None:
    """Each kill lands somewhere in a loop of redactions (reading, writing files, committing,
    removing the old files). After each: the log verifies deeply, its head hash is the one it had
    before any redaction, every redaction that returned is in force, and nothing is left over."""
    path = tmp_path / "log"
    log = _log(path, events=300, seal_every=50)
    log.seal()
    anchor = checkpoint(log)
    rng = random.Random(20261207)
    latest: dict[int, int] = {}  # seq -> the last returned redaction that changed it
    first, returned = 1, 0
    for trial in range(TRIALS):
        done = _redact_and_kill(path, rng.randrange(1 << 30), first, rng)
        returned += len(done)
        for k, seqs in done:
            latest.update((s, k) for s in seqs)
        log = EventLog(path)
        report = verify(log, at_seq=anchor.seq)
        assert report.ok, [str(p) for p in report.problems]
        assert report.hash_at == anchor.head_hash == report.head_hash
        m = log.read_manifest()
        first = m.lines + 1  # the next child numbers its values past every redaction that may have landed
        values = _values(log)
        for s, k in latest.items():
            got = values[s]
            assert got.startswith("[redacted:") and int(got[10:-1]) >= k, (s, k, got)
        assert all(values[s] == f"secret {s}" for s in values if not values[s].startswith("[redacted:"))
        assert set(log.snapshot().redacted) >= set(latest)
        named = {f.name for e in log.read_manifest().entries for f in e.files}
        left = set(log.storage.names()) - named
        assert all(".r" in n for n in left), left  # only uncommitted copies, which the next redaction removes
        log.close()
    assert returned >= TRIALS // 2, "the children finished almost no redaction; the test proved little"
    log = EventLog(path)
    log.redact(lambda snap: [Change("annotation", 1, {"value": "[redacted:last]"})], "ada", [])
    assert set(log.storage.names()) == {f.name for e in log.read_manifest().entries for f in e.files}
    assert verify(log).ok


# ------------------------------------------------------------------ the command


def _every_file(root: Path):
    """(name, bytes) of every file under ``root``; Parquet decoded (every cell), SQLite dumped."""
    for f in sorted(p for p in root.rglob("*") if p.is_file()):
        data = f.read_bytes()
        yield str(f.relative_to(root)), data
        if f.suffix == ".parquet":
            table = pq.read_table(f)
            cells = [v for col in table.columns for v in col.to_pylist() if isinstance(v, (str, bytes))]
            yield f"{f.relative_to(root)} (decoded)", b"\n".join(c if isinstance(c, bytes) else c.encode() for c in cells)
        if data.startswith(b"SQLite format 3"):
            with sqlite3.connect(f) as db:
                dump = "\n".join(db.iterdump())
            yield f"{f.relative_to(root)} (dumped)", dump.encode()


def test_redact_takes_every_value_out_of_every_file_and_verify_still_passes(leaky, tmp_path: Path) -> None:
    env, transcript = leaky
    root = Path(env["CHRONICLE_ROOT"])
    # the key echoed by a model too: a value goes wherever it is, whatever event holds it
    echo = {"type": "llm.response", "stream": "doc:d1", "event_id": "r1", "doc_id": "d1", "attempt": 1,
            "status": "ok", "text": f"Your key is {FAKE['anthropic-key']}; keep it safe."}
    subprocess.run([sys.executable, "-m", "chronicle", "append"], env=env, check=True, capture_output=True,
                   input=(json.dumps(echo) + "\n").encode())
    for args in (["rebuild"], ["search", "deploy"], ["docs"]):
        chronicle(env, *args)
    anchor = chronicle(env, "checkpoint").stdout.split()[0].decode()
    found = [json.loads(x) for x in chronicle(env, "secrets", "list", "--json").stdout.splitlines()]
    assert len(found) == test_secrets.FINDINGS + 1

    out = json.loads(chronicle(env, "secrets", "redact", "--all", "--json").stdout)
    assert sorted(out["findings"]) == sorted(f["id"] for f in found)
    assert out["events"] == 4 and out["rebuilt"] == ["tables", "search index"]

    verified = chronicle(env, "verify", "--against", anchor)
    assert b"only grown" in verified.stdout and b"1 redaction(s)" in verified.stdout
    chronicle(env, "export", "html", str(root / "exported-html"))
    chronicle(env, "export", "sessions", str(root / "exported-sessions"))
    for name, data in _every_file(root):
        _no_secret_in(data, name)
    # what a user reads: the value replaced, and said so
    shown = chronicle(env, "show", "messages", "--columns", "text", "--json").stdout
    assert b"[redacted:anthropic-key]" in shown and b"[secret:" not in shown
    exported = chronicle(env, "export", "session", SID[:8])
    assert b"[redacted:env-assignment]" in exported.stdout and b"redacted from the log" in exported.stderr
    assert b"lines 1, 3, 4" in exported.stderr and b"holds" not in exported.stderr
    for line in exported.stdout.splitlines():
        json.loads(line)  # each line is still the same JSON, with one string changed
    events = [json.loads(x) for x in chronicle(env, "log", "--type", "session.line", "--json").stdout.splitlines()]
    assert [e["line_no"] for e in events if e.get("redacted")] == [1, 3, 4]  # the flag a reader sees
    assert b"(redacted)" in chronicle(env, "history", "session", SID[:8]).stdout
    every = [json.loads(x) for x in chronicle(env, "secrets", "list", "--all", "--json").stdout.splitlines()]
    assert all(f["redacted"] for f in every) and chronicle(env, "secrets", "list").stdout.startswith(b"no findings")
    again = chronicle(env, "secrets", "redact", "--all")
    assert b"nothing to redact" in again.stdout


def test_redacting_one_finding_takes_its_value_wherever_it_is_and_leaves_the_others(leaky) -> None:
    env, _ = leaky
    found = {f["rule"]: f for f in map(json.loads, chronicle(env, "secrets", "list", "--json").stdout.splitlines())}
    out = chronicle(env, "secrets", "redact", found["aws-key"]["id"])
    assert b"redacted 1 finding(s)' values from 1 event(s)" in out.stdout
    exported = chronicle(env, "export", "session", SID[:8]).stdout
    assert FAKE["aws-key"].encode() not in exported and b"[redacted:aws-key]" in exported
    assert FAKE["github-token"].encode() in exported  # not asked for: still there (masked when shown)
    left = [json.loads(x) for x in chronicle(env, "secrets", "list", "--json").stdout.splitlines()]
    assert len(left) == len(found) - 1 and found["aws-key"]["id"] not in {f["id"] for f in left}


def test_redact_refuses_unknown_or_allowed_findings_and_changes_nothing(leaky) -> None:
    env, _ = leaky
    manifest = Path(env["CHRONICLE_ROOT"]) / "data" / "log" / "MANIFEST"
    found = {f["rule"]: f for f in map(json.loads, chronicle(env, "secrets", "list", "--json").stdout.splitlines())}
    chronicle(env, "secrets", "allow", found["aws-key"]["id"], "--reason", "a documented example")
    before = manifest.read_bytes()
    for args, says in ((["s000000000000"], b"no finding 's000000000000'"),
                       ([found["github-token"]["id"], "s0bad"], b"no finding 's0bad'"),
                       ([found["aws-key"]["id"]], b"is allowed"),
                       ([], b"name the findings to redact"),
                       ([found["aws-key"]["id"], "--all"], b"name the findings to redact")):
        bad = chronicle(env, "secrets", "redact", *args, check=False)
        assert bad.returncode == 2 and says in bad.stderr, (args, bad.stderr)
        assert manifest.read_bytes() == before
    # --all leaves the allowed value where it is
    chronicle(env, "secrets", "redact", "--all")
    exported = chronicle(env, "export", "session", SID[:8]).stdout
    assert FAKE["aws-key"].encode() in exported and FAKE["github-token"].encode() not in exported


def test_tables_built_before_a_redaction_are_built_again_on_their_next_read(leaky) -> None:
    """A redaction killed before it rebuilt the tables (or made through the store alone) leaves
    tables that hold the value; the next read builds them again from the redacted log."""
    env, _ = leaky
    root = Path(env["CHRONICLE_ROOT"])
    chronicle(env, "rebuild")
    from chronicle.secrets.redact import redact
    from chronicle.secrets.scan import salt

    log = EventLog(root / "data" / "log")
    rows = log.snapshot().frame("secret.found").collect()
    redact(log, salt(root / "data"), rows)
    states = {json.loads(x)["state"] for x in chronicle(env, "tables", "--json").stdout.splitlines()}
    assert "redacted since" in states
    shown = chronicle(env, "show", "messages", "--columns", "text", "--json").stdout
    assert b"[redacted:anthropic-key]" in shown
    for name, data in _every_file(root / "data" / "tables"):
        if name.startswith(("messages", "tool_calls")) and "(decoded)" in name:  # what `show messages` read
            _no_secret_in(data, name)
    hits = chronicle(env, "search", FAKE["stripe-key"].split("_")[-1]).stdout
    assert FAKE["stripe-key"].encode() not in hits
    # the tables no read touched yet: a redaction run again finishes them
    finished = chronicle(env, "secrets", "redact", "--all").stdout
    assert b"nothing to redact" in finished and b"rebuilt what an earlier redaction left: tables" in finished
    for name, data in _every_file(root / "data"):
        _no_secret_in(data, name)


def test_sigkill_of_the_command_at_random_instants_then_running_it_again_finishes(leaky) -> None:
    env, _ = leaky
    root = Path(env["CHRONICLE_ROOT"])
    chronicle(env, "rebuild")
    anchor = chronicle(env, "checkpoint").stdout.split()[0].decode()
    rng = random.Random(7)
    for _ in range(4):
        child = subprocess.Popen([sys.executable, "-m", "chronicle", "secrets", "redact", "--all"], env=env,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        time.sleep(rng.uniform(0.3, 2.5))
        child.send_signal(signal.SIGKILL)
        child.wait()
        assert b"only grown" in chronicle(env, "verify", "--against", anchor).stdout
    chronicle(env, "secrets", "redact", "--all")
    chronicle(env, "show", "messages", "--json")
    for name, data in _every_file(root / "data"):
        _no_secret_in(data, name)
    assert pl.DataFrame([json.loads(x) for x in chronicle(env, "secrets", "list", "--all", "--json").stdout.splitlines()])[
        "redacted"].all()
