"""Replay for audits: rebuilding the past, entity histories, and no network on the way."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from chronicle.events import LlmPrompt, LlmResponse, ParseResult
from chronicle.ingest.sessions import SessionIngester
from chronicle.projection import Engine, discover
from chronicle.workspace import Workspace

from conftest import ROOT, run_cli

EXAMPLES = ROOT / "data" / "examples" / "claude-projects"
SESSION = "5e55a000-0000-4000-8000-000000000001"


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.glob("*.parquet")}


def _ws(tmp_path: Path) -> Workspace:
    ws = Workspace.at(tmp_path / "ws")
    ws.init()
    return ws


def test_replay_equals_what_a_rebuild_produced_then(tmp_path: Path) -> None:
    ws = _ws(tmp_path)
    projects = tmp_path / "projects"
    shutil.copytree(EXAMPLES, projects)
    log = ws.open_log()
    SessionIngester(log, ws.data / "ingest.lock").run([projects])
    log.seal()
    Engine(ws.tables_dir, discover()).run(log.snapshot(), full=True)
    then = log.snapshot().head
    before = _digests(ws.tables_dir)
    with open(projects / "-home-ana-repo" / f"{SESSION}.jsonl", "ab") as fh:
        fh.write(b'{"type":"user","uuid":"late","sessionId":"' + SESSION.encode() + b'","message":{"role":"user","content":"later"}}\n')
    SessionIngester(log, ws.data / "ingest.lock").run([projects])
    run_cli("rebuild", root=ws.root, check=True)
    assert _digests(ws.tables_dir) != before
    out = tmp_path / "then"
    run_cli("replay", "--as-of", str(then), "--out", str(out), root=ws.root, check=True)
    assert _digests(out) == before


def test_history_of_a_session_and_of_a_document(tmp_path: Path) -> None:
    ws = _ws(tmp_path)
    log = ws.open_log()
    SessionIngester(log, ws.data / "ingest.lock").run([EXAMPLES])
    out = run_cli("history", "session", SESSION, root=ws.root, check=True).stdout.decode()
    assert "subagent ab12cd34" in out and "agent-ab12cd34.meta.json" in out and "source.appended" in out
    docs = []
    for stage, doc, parent in (("draft", "d1", None), ("essay", "e1", "d1"), ("evaluation", "v1", "e1")):
        docs.append(LlmPrompt(stream=f"doc:{doc}", doc_id=doc, logical_key_id=f"k-{doc}", stage=stage,
                              template_id=f"t-{stage}", template_sha256="0" * 64, prompt_sha256="1" * 64,
                              prompt="...", model_id="m", parent_doc_id=parent))
    docs += [LlmResponse(stream="doc:v1", doc_id="v1", attempt=1, status="gen_error", error="HTTP 500"),
             LlmResponse(stream="doc:v2", doc_id="v2", attempt=2, status="ok", text="SCORE: 7",
                         supersedes_doc_id="v1"),
             ParseResult(stream="doc:v2", doc_id="v2", parser="score", parser_version=1, status="ok", score=7.0)]
    log.append(docs)
    out = run_cli("history", "doc", "v1", root=ws.root, check=True).stdout.decode()
    assert "evaluation v1 (t-evaluation, m) <- essay e1 (t-essay, m) <- draft d1 (t-draft, m)" in out
    assert "attempts: v1 (gen_error) -> v2 (ok)" in out
    lines = run_cli("history", "doc", "v2", "--json", root=ws.root, check=True).stdout.decode().splitlines()
    assert [json.loads(x).get("type") for x in lines if "type" in json.loads(x)] == ["llm.response", "parse.result"]
    assert run_cli("history", "doc", "nope", root=ws.root).returncode == 2


def test_audit_commands_open_no_network_connection(tmp_path: Path) -> None:
    ws = _ws(tmp_path)
    SessionIngester(ws.open_log(), ws.data / "ingest.lock").run([EXAMPLES])
    for sub in ("1_raw", "cohorts"):
        shutil.copytree(ROOT / "data" / "examples" / "experiment" / sub, ws.data / sub, dirs_exist_ok=True)
    run_cli("run", "demo", "--provider", "echo", root=ws.root, check=True)
    doc = ws.open_log().snapshot().frame("llm.prompt", ["doc_id"]).collect()["doc_id"][0]
    guard = tmp_path / "guard"
    guard.mkdir()
    (guard / "sitecustomize.py").write_text(
        "import socket\n"
        "def _refuse(*a, **k):\n    raise RuntimeError('network access attempted')\n"
        # a Unix socket (a running daemon's: chronicle.served) is this machine, not the network
        "_connect, _connect_ex = socket.socket.connect, socket.socket.connect_ex\n"
        "def _local(real):\n"
        "    def connect(self, address):\n"
        "        return real(self, address) if self.family == socket.AF_UNIX else _refuse()\n"
        "    return connect\n"
        "socket.socket.connect = _local(_connect)\nsocket.socket.connect_ex = _local(_connect_ex)\n"
        "socket.create_connection = _refuse\nsocket.getaddrinfo = _refuse\n")
    os.environ["PYTHONPATH"] = f"{guard}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"
    try:
        probe = subprocess.run([sys.executable, "-c", "import socket; socket.create_connection(('127.0.0.1', 9))"],
                               capture_output=True, env=os.environ)
        assert b"network access attempted" in probe.stderr  # the guard is live in child processes
        sanity = run_cli("rebuild", root=ws.root)
        assert sanity.returncode == 0, sanity.stderr
        for args in (("replay", "--as-of", "5", "--out", str(tmp_path / "r")), ("history", "session", SESSION),
                     ("verify", "--deep"), ("checkpoint",), ("status",), ("export", "sessions", str(tmp_path / "x")),
                     ("audit", "reparse", "--parser", "score", "--record"), ("audit", "prompt", doc), ("docs",)):
            proc = run_cli(*args, root=ws.root)
            assert proc.returncode == 0 and b"network access attempted" not in proc.stderr, (args, proc.stderr)
    finally:
        os.environ["PYTHONPATH"] = os.environ["PYTHONPATH"].split(os.pathsep, 1)[1]
