"""Secrets in transcripts and LLM text: found at the door, never shown or shipped unmasked.

Every key here is made up, and built by concatenation so that this file holds
nothing a secret scanner would flag.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from chronicle.secrets import rules
from chronicle.secrets.mask import Masker
from chronicle.secrets.scan import find, scan
from chronicle.store import EventLog

from conftest import SHARED

SID = "5e55a000-0000-4000-8000-00000000c0ff"
#: rule -> a made-up value of its shape
FAKE = {
    "anthropic-key": "sk-ant-" + "api03-" + "Zx9Qw" * 18,
    "openai-key": "sk-" + "proj-" + "Ab3Cd" * 8,
    "openrouter-key": "sk-" + "or-v1-" + "0f1e2d3c" * 8,
    "github-token": "gh" + "p_" + "A1b2C3d4E5" * 3 + "F6g7h8",
    "github-pat": "github_" + "pat_" + "11ABCDEFG0" + "x1Y2z3" * 8,
    "aws-key": "AK" + "IA" + "QWERTY2345ZXCV67",
    "private-key": "-----BEGIN RSA " + "PRIVATE KEY-----\nMIIEpAIBAAKCAQEA7x\nq9Zs\n-----END RSA " + "PRIVATE KEY-----",
    "bearer-token": "Bearer " + "eyQ" + "9f8e7d6c5b4a" * 3,
    "slack-token": "xo" + "xb-" + "1234567890-" + "abcdefghij0123",
    "stripe-key": "sk" + "_live_" + "4eC39HqLyjWDarjtT1zdp7dc",
}
ENV_VALUE = "s3cr3t-" + "Value-0042"
ENV_LINE = "DATABASE_PASSWORD=" + ENV_VALUE
#: A key inside a file a tool read base64-encoded (wrapped at 76 columns, as `base64` prints it).
BLOB_KEY = "sk-ant-" + "api03-" + "Bl0bK" * 18
BLOB = base64.encodebytes(b"# deploy settings\nREGION=eu-west-1\nANTHROPIC_API_KEY=" + BLOB_KEY.encode() + b"\n").decode()
#: Findings in the leaky transcript: one per FAKE value, the .env line's, and the one inside the blob.
FINDINGS = len(FAKE) + 2
_B64_RUN = re.compile(rb"[A-Za-z0-9+/]{16,}={0,2}(?:(?:\\n|\n)[A-Za-z0-9+/]{4,}={0,2})*")


def _value(rule: str) -> str:
    """The part of FAKE[rule] a rule calls the secret (a bearer token's, not the word Bearer)."""
    return FAKE[rule].split(" ", 1)[1] if rule == "bearer-token" else FAKE[rule]


def _transcript(folder: Path) -> Path:
    """A session that leaks every kind: typed by the user, read from .env by a tool, in a bash output."""
    folder.mkdir(parents=True, exist_ok=True)
    base = {"sessionId": SID, "cwd": "/home/ada/app", "version": "2.1.30", "timestamp": "2026-11-02T09:00:00.000Z"}
    leaks = " ".join(f"{name}: {value}" for name, value in FAKE.items())
    lines = [
        {**base, "type": "user", "uuid": "u1", "message": {"role": "user", "content": "please deploy with " + leaks}},
        {**base, "type": "assistant", "uuid": "a1", "parentUuid": "u1", "requestId": "req_a1",
         "message": {"id": "msg_a1", "role": "assistant", "model": "claude-sonnet-4-5-20250929",
                     "content": [{"type": "tool_use", "id": "toolu_env", "name": "Read", "input": {"file_path": ".env"}}],
                     "usage": {"input_tokens": 10, "output_tokens": 5}}},
        {**base, "type": "user", "uuid": "u2", "parentUuid": "a1",
         "message": {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_env",
                                                   "content": f"DEBUG=true\n{ENV_LINE}\nPORT=8080\n"}]}},
        {**base, "type": "user", "uuid": "u3", "parentUuid": "u2",
         "message": {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_b64",
                                                   "content": f"$ base64 deploy.env\n{BLOB}"}]}},
    ]
    path = folder / f"{SID}.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def chronicle(env: dict[str, str], *args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "chronicle", *args], env=env, capture_output=True, timeout=180)
    if check:
        assert proc.returncode == 0, proc.stderr.decode()
    return proc


@pytest.fixture
def leaky(tmp_path: Path) -> tuple[dict[str, str], Path]:
    env = {**os.environ, "CHRONICLE_ROOT": str(tmp_path / "ws"), "HOME": str(tmp_path / "home")}
    chronicle(env, "init")
    transcript = _transcript(tmp_path / "projects" / "-home-ada-app")
    summary = json.loads(chronicle(env, "ingest", "sessions", str(tmp_path / "projects"), "--json").stdout)
    assert summary["secrets_found"] == FINDINGS  # found as it was recorded
    return env, transcript


def _secrets() -> list[bytes]:
    return [_value(r).encode() for r in FAKE] + [ENV_VALUE.encode(), BLOB_KEY.encode()]


def _decoded_base64(data: bytes) -> bytes:
    """Every run of base64 text in ``data`` decoded, at each of its four alignments."""
    out = []
    for m in _B64_RUN.finditer(data):
        text = m.group().replace(b"\\n", b"").replace(b"\n", b"")
        for k in range(4):
            part = text[k:]
            out.append(base64.b64decode(part[: len(part) - len(part) % 4] + b"", validate=False))
    return b"\n".join(out)


def _no_secret_in(data: bytes, where: str) -> None:
    decoded = _decoded_base64(data)
    for value in _secrets():
        for form in (value, json.dumps(value.decode())[1:-1].encode(), base64.b64encode(value)):
            assert form not in data, f"{where} shows {value[:12]!r}..."
        assert value not in decoded, f"{where} holds {value[:12]!r}... in base64"


# ------------------------------------------------------------------ finding


def test_every_rule_finds_its_kind_and_names_the_exact_bytes() -> None:
    for name, value in FAKE.items():
        for text in (f"key: {value}\n", json.dumps({"content": f"x {value} y"})):
            data = text.encode()
            hits = [(h.rule, data[h.start:h.end]) for h in find(data)]
            secret = json.dumps(_value(name))[1:-1].encode()  # as the JSON line holds it
            assert (name, secret) in hits or (name, _value(name).encode()) in hits, (name, text, hits)
    data = json.dumps({"content": f"DEBUG=1\n{ENV_LINE}\n"}).encode()
    assert [(h.rule, data[h.start:h.end]) for h in find(data)] == [("env-assignment", ENV_VALUE.encode())]


@pytest.mark.parametrize("shift", [0, 1, 2])
def test_a_secret_inside_base64_is_found_in_every_alignment_and_wrapping(shift: int) -> None:
    """A file read base64-encoded (an attachment, `base64 .env`): the base64 is decoded and looked
    into; the finding's span is the base64 text that encodes the value, its value the secret."""
    for name in ("anthropic-key", "github-pat", "aws-key", "private-key", "stripe-key"):
        plain = b"#" * shift + b"config follows\n" + _value(name).encode() + b"\nPORT=8080\n" + b"z" * 40
        for blob in (base64.b64encode(plain), base64.encodebytes(plain)):  # one line; wrapped at 76
            for data in (b"data: " + blob, json.dumps({"type": "tool_result", "content": blob.decode()}).encode()):
                hits = [h for h in find(data) if h.rule == f"base64:{name}"]
                assert [h.value for h in hits] == [_value(name).encode()], (name, shift, data[:60])
                inside = data[hits[0].start:hits[0].end].replace(b"\\n", b"").replace(b"\n", b"")
                assert _value(name).encode() in base64.b64decode(inside)  # whole groups that hold it all
    assert list(find(base64.b64encode(b"just some text that is not secret at all, really"))) == []


def test_what_is_not_a_secret_is_not_found() -> None:
    for text in ("task-" + "a" * 60, "PASSWORD=os.environ['DB']", "API_KEY=${API_KEY}", "the token is in the vault",
                 "sha256:" + "ab" * 32, "git commit 0123456789abcdef0123456789abcdef01234567"):
        assert list(find(text.encode())) == [], text


@pytest.mark.skipif(not (SHARED / "corpus").is_dir(), reason="the shared corpus is absent (a fresh clone)")
def test_the_real_transcripts_hold_no_false_positive(tmp_path: Path) -> None:
    from chronicle.ingest.sessions import SessionIngester

    with EventLog.init(tmp_path / "log") as log:
        SessionIngester(log, tmp_path / "lock").run([SHARED / "corpus" / "claude-code", SHARED / "corpus" / "codex"])
        s = scan(log, tmp_path)
    assert s.events_scanned > 5000 and s.findings == 0


def test_findings_say_where_never_what_and_a_scan_again_records_nothing_twice(leaky) -> None:
    env, transcript = leaky
    found = [json.loads(x) for x in chronicle(env, "secrets", "list", "--json").stdout.splitlines()]
    assert sorted(f["rule"] for f in found) == sorted([*FAKE, "env-assignment", "base64:anthropic-key"])
    lines = transcript.read_bytes().splitlines(keepends=True)
    for f in found:
        span = lines[f["line_no"] - 1][f["start"]:f["end"]]
        if f["rule"].startswith("base64:"):  # the base64 text that encodes the key, line breaks and all
            assert BLOB_KEY.encode() in base64.b64decode(span.replace(b"\\n", b"")) and b"\\n" in span
            continue
        assert span in [json.dumps(v.decode())[1:-1].encode() for v in _secrets()]
        assert f["where"] == str(transcript.resolve()) and f["field"] == "raw"
    log = chronicle(env, "log", "--type", "secret.found", "--json").stdout
    _no_secret_in(log, "the secret.found events")
    assert chronicle(env, "secrets", "scan", "--full", "--json").returncode == 0
    again = [json.loads(x) for x in chronicle(env, "secrets", "list", "--json").stdout.splitlines()]
    assert sorted(f["id"] for f in again) == sorted(f["id"] for f in found)
    counts = json.loads(chronicle(env, "stats", "--json").stdout)["events_by_type"]
    assert counts["secret.found"] == len(found)  # the full scan's findings were duplicates


def test_a_scan_stopped_midway_resumes_from_its_checkpoint(tmp_path: Path, monkeypatch) -> None:
    from chronicle.ingest.sessions import SessionIngester
    from chronicle.secrets import scan as scan_module

    for i in range(3):
        _transcript(tmp_path / "projects" / f"-p{i}")
    with EventLog.init(tmp_path / "log") as log:
        SessionIngester(log, tmp_path / "lock").run([tmp_path / "projects"])
        monkeypatch.setattr(scan_module, "WINDOW", 4)

        def stop(lo: int, hi: int) -> None:
            if hi >= 8:
                raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            scan_module.scan(log, tmp_path, on_window=stop)
        resumed = scan_module.scan(log, tmp_path)
        assert resumed.start_seq == 8 and not resumed.full
        ids = log.snapshot().frame("secret.found", ["finding_id"]).collect()["finding_id"].to_list()
    assert len(ids) == len(set(ids)) == 3 * FINDINGS


def test_new_rules_read_every_event_again(tmp_path: Path, monkeypatch) -> None:
    from chronicle.ingest.sessions import SessionIngester
    from chronicle.secrets import scan as scan_module

    _transcript(tmp_path / "projects" / "-p")
    with EventLog.init(tmp_path / "log") as log:
        SessionIngester(log, tmp_path / "lock").run([tmp_path / "projects"])
        first = scan_module.scan(log, tmp_path)
        assert scan_module.scan(log, tmp_path).events_scanned == 0  # nothing new (its own events carry no text)
        monkeypatch.setattr(rules, "VERSION", "changed")
        again = scan_module.scan(log, tmp_path)
    assert first.findings == FINDINGS and again.full and again.start_seq == 0


# ------------------------------------------------------------------ never shown


def test_nothing_shows_a_secret(leaky, tmp_path: Path) -> None:
    env, _ = leaky
    for args in (["show", "messages", "--columns", "all", "--json"], ["show", "tool_calls", "--json"],
                 ["show", "messages", "--columns", "all"], ["sql", "SELECT * FROM messages", "--json"],
                 ["sql", "SELECT raw FROM \"session.line\"", "--json"],
                 ["log", "--json"], ["log"], ["history", "session", SID], ["history", "session", SID, "--json"]):
        out = chronicle(env, *args).stdout
        _no_secret_in(out, " ".join(args))
        if "--json" in args:  # raw bytes are base64 in JSON: decode them too
            for line in out.splitlines():
                ev = json.loads(line)
                if ev.get("raw"):
                    _no_secret_in(base64.b64decode(ev["raw"]), " ".join(args) + ": raw")
    assert b"[secret:anthropic-key]" in chronicle(env, "show", "messages", "--columns", "text", "--json").stdout
    for kind in ("html", "markdown"):
        out = tmp_path / kind
        chronicle(env, "export", kind, str(out))
        for f in out.rglob("*"):
            if f.is_file():
                _no_secret_in(f.read_bytes(), f"export {kind}: {f.name}")


def test_the_viewer_shows_no_secret(leaky) -> None:
    from web_helpers import Viewer

    env, _ = leaky
    chronicle(env, "rebuild")
    viewer = Viewer(Path(env["CHRONICLE_ROOT"]))
    try:
        for path in ("/", "/sessions", f"/sessions/{SID}", "/search?q=deploy", "/events"):
            try:
                body = urllib.request.urlopen(viewer.url + path, timeout=30).read()
            except urllib.error.HTTPError as exc:
                body = exc.read()
            _no_secret_in(body, f"the viewer's {path}")
        page = urllib.request.urlopen(viewer.url + f"/sessions/{SID}", timeout=30).read()
        assert b"[secret:" in page and FAKE["aws-key"].encode() not in page
        found = {f["rule"]: f["id"] for f in map(json.loads, chronicle(env, "secrets", "list", "--json").stdout.splitlines())}
        chronicle(env, "secrets", "allow", found["aws-key"])  # while the viewer runs
        deadline = time.monotonic() + 15
        while FAKE["aws-key"].encode() not in page and time.monotonic() < deadline:
            time.sleep(0.5)
            page = urllib.request.urlopen(viewer.url + f"/sessions/{SID}", timeout=30).read()
        assert FAKE["aws-key"].encode() in page  # allowed: shown again
        _no_secret_in(page.replace(FAKE["aws-key"].encode(), b""), "the viewer after the allow")
    finally:
        viewer.stop()


def test_export_session_is_byte_exact_and_says_so_unless_redacted(leaky, tmp_path: Path) -> None:
    env, transcript = leaky
    exact = chronicle(env, "export", "session", SID[:8])
    assert exact.stdout == transcript.read_bytes()
    assert f"holds {FINDINGS} secrets".encode() in exact.stderr and b"--redact" in exact.stderr
    redacted = chronicle(env, "export", "session", SID[:8], "--redact")
    _no_secret_in(redacted.stdout, "export session --redact")
    assert redacted.stdout.count(b"[secret:") == FINDINGS and b"holds" not in redacted.stderr
    for line in redacted.stdout.splitlines():
        json.loads(line)  # still one JSON object per line


def test_an_allowed_finding_is_shown_again_and_a_wrong_id_is_refused(leaky) -> None:
    env, _ = leaky
    found = {f["rule"]: f for f in map(json.loads, chronicle(env, "secrets", "list", "--json").stdout.splitlines())}
    fid = found["aws-key"]["id"]
    assert b"allowed " + fid.encode() in chronicle(env, "secrets", "allow", fid, "--reason", "a documented example").stdout
    assert b"already" in chronicle(env, "secrets", "allow", fid).stdout
    shown = chronicle(env, "show", "messages", "--columns", "text", "--json").stdout
    assert FAKE["aws-key"].encode() in shown and FAKE["github-token"].encode() not in shown
    listed = [json.loads(x) for x in chronicle(env, "secrets", "list", "--json").stdout.splitlines()]
    assert fid not in {f["id"] for f in listed} and len(listed) == len(found) - 1
    every = {f["id"]: f for f in map(json.loads, chronicle(env, "secrets", "list", "--all", "--json").stdout.splitlines())}
    assert every[fid]["allowed"] and every[fid]["reason"] == "a documented example"
    bad = chronicle(env, "secrets", "allow", "s000000000000", check=False)
    assert bad.returncode == 2 and b"no finding 's000000000000'" in bad.stderr


def test_the_masker_masks_every_form_and_keeps_what_is_allowed() -> None:
    key = b"k" * 32
    text = f"use {FAKE['github-token']} or {FAKE['aws-key']}"
    assert Masker(key).text(text) == "use [secret:github-token] or [secret:aws-key]"
    assert Masker(key).bytes(text.encode()) == b"use [secret:github-token] or [secret:aws-key]"
    from chronicle.secrets.scan import value_hash

    keep = Masker(key, frozenset({value_hash(key, FAKE["aws-key"].encode())}))
    assert keep.text(text) == f"use [secret:github-token] or {FAKE['aws-key']}"
    assert Masker(key).text(ENV_LINE) == "DATABASE_PASSWORD=[secret:env-assignment]"


def test_prompts_and_responses_are_scanned_and_their_documents_masked(tmp_path: Path) -> None:
    """An LLM echoing a key it was given: the prompt and the response are findings, and the
    document files ``chronicle docs`` writes hold neither."""
    env = {**os.environ, "CHRONICLE_ROOT": str(tmp_path / "ws"), "HOME": str(tmp_path / "home")}
    chronicle(env, "init")
    key = FAKE["openrouter-key"]
    prompt = {"type": "llm.prompt", "stream": "doc:d1", "event_id": "p1", "doc_id": "d1", "logical_key_id": "k1",
              "stage": "draft", "template_id": "t", "template_sha256": "0", "prompt_sha256": "0",
              "prompt": f"Summarise this config: OPENROUTER={key}", "model_id": "m"}
    response = {"type": "llm.response", "stream": "doc:d1", "event_id": "r1", "doc_id": "d1", "attempt": 1,
                "status": "ok", "text": f"The config sets the key {key}."}
    subprocess.run(
        [sys.executable, "-m", "chronicle", "append"], env=env, check=True, capture_output=True,
        input=(json.dumps(prompt) + "\n" + json.dumps(response) + "\n").encode())
    chronicle(env, "secrets", "scan")
    found = [json.loads(x) for x in chronicle(env, "secrets", "list", "--json").stdout.splitlines()]
    assert sorted((f["target_type"], f["rule"], f["field"]) for f in found) == [
        ("llm.prompt", "openrouter-key", "prompt"), ("llm.response", "openrouter-key", "text")]
    chronicle(env, "docs")
    docs = Path(env["CHRONICLE_ROOT"]) / "data" / "docs"
    written = [f for f in docs.rglob("*") if f.is_file()]
    assert any(f.name == "raw.txt" for f in written)
    for f in written:
        _no_secret_in(f.read_bytes(), f"docs: {f.relative_to(docs)}")


def test_an_ingest_scans_each_commit_as_it_makes_it_and_finds_what_reading_back_finds(tmp_path: Path) -> None:
    from chronicle.ingest.sessions import SessionIngester

    for i in range(3):
        _transcript(tmp_path / "projects" / f"-p{i}")
    with EventLog.init(tmp_path / "a" / "log") as log:
        summary = SessionIngester(log, tmp_path / "a" / "lock", secrets_dir=tmp_path / "a").run([tmp_path / "projects"])
        assert summary.secrets_found == 3 * FINDINGS
        assert scan(log, tmp_path / "a").events_scanned == 0  # every commit was covered as it was made
        snap = log.snapshot()
        live = snap.frame("secret.found", ["target_seq", "start", "end", "rule"]).sort("target_seq", "start").collect()
        raw = dict(snap.frame("session.line", ["seq", "raw"]).collect().rows())
    for seq, start, end, rule in live.rows():
        span = raw[seq][start:end]
        if rule.startswith("base64:"):  # the base64 text that encodes it
            span = base64.b64decode(span.replace(b"\\n", b""))
            assert BLOB_KEY.encode() in span, rule
        else:
            assert span in [json.dumps(v.decode())[1:-1].encode() for v in _secrets()], rule
    with EventLog.init(tmp_path / "b" / "log") as log:  # the same lines, scanned after, read back
        SessionIngester(log, tmp_path / "b" / "lock").run([tmp_path / "projects"])
        scan(log, tmp_path / "b")
        later = log.snapshot().frame("secret.found", ["target_seq", "start", "end", "rule"]).sort(
            "target_seq", "start").collect()
    assert live.equals(later)
