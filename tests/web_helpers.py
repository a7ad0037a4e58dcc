"""A workspace full of hostile text, and `chronicle serve` as a real process on loopback."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

from chronicle.workspace import Workspace

ROOT = Path(__file__).resolve().parents[1]
PAYLOAD = '<script>alert("pwned")</script><img src=x onerror="alert(2)">'
HOSTILE_SID = "a7a7a7a7-0000-4000-8000-00000000beef"
LONG_SID = "10101010-0000-4000-8000-000000000450"
#: In chronicle.toml and in a file beside the workspace: no URL may ever serve it.
SENTINEL = "SENTINEL-7d1e-do-not-serve"


def _line(**record: object) -> str:
    base = {"cwd": "/home/eve/<b>repo</b>", "sessionId": HOSTILE_SID, "version": "2.1.30", "gitBranch": "main",
            "isSidechain": False, "timestamp": "2026-03-05T10:00:00.000Z"}
    return json.dumps({**base, **record}) + "\n"


def hostile_transcript(folder: Path) -> None:
    """A session whose every field a viewer shows carries markup."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = [
        json.dumps({"type": "summary", "summary": "title " + PAYLOAD, "leafUuid": "h4"}) + "\n",
        _line(type="user", uuid="h1", parentUuid=None, message={"role": "user", "content": "please " + PAYLOAD}),
        _line(type="assistant", uuid="h2", parentUuid="h1", requestId="req_h2", message={
            "id": "msg_h2", "role": "assistant", "model": "claude-sonnet-4-5-20250929",
            "content": [{"type": "text", "text": "</pre></article>" + PAYLOAD},
                        {"type": "tool_use", "id": "toolu_h", "name": "Bash",
                         "input": {"command": "echo '" + PAYLOAD + "'", "description": PAYLOAD}}],
            "usage": {"input_tokens": 10, "output_tokens": 5}}),
        _line(type="user", uuid="h3", parentUuid="h2", message={"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_h", "content": PAYLOAD, "is_error": False}]}),
        _line(type="user", uuid="h4", parentUuid="h3", message={"role": "user", "content": "thanks " + PAYLOAD}),
    ]
    (folder / f"{HOSTILE_SID}.jsonl").write_text("".join(lines))


def long_transcript(folder: Path, messages: int = 450) -> None:
    """A session long enough to need several pages."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps({"type": "user", "sessionId": LONG_SID, "uuid": f"L{i}", "parentUuid": f"L{i - 1}" if i else None,
                         "cwd": "/home/long", "timestamp": f"2026-03-06T10:{i // 60 % 60:02d}:{i % 60:02d}.000Z",
                         "message": {"role": "user", "content": f"message number {i}"}}) + "\n"
             for i in range(messages)]
    (folder / f"{LONG_SID}.jsonl").write_text("".join(lines))


def chronicle(*args: str, root: Path, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "CHRONICLE_ROOT": str(root)}
    proc = subprocess.run([sys.executable, "-m", "chronicle", *args], capture_output=True, text=True, env=env,
                          timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"chronicle {' '.join(args)} exited {proc.returncode}: {proc.stderr}")
    return proc


def build_workspace(base: Path) -> Path:
    """Sessions (the examples and the hostile one) and an echo run whose concepts carry markup."""
    ws = base / "ws"
    Workspace.at(ws).init()
    projects = base / "projects"
    shutil.copytree(ROOT / "data" / "examples" / "claude-projects", projects)
    hostile_transcript(projects / "-home-eve-repo")
    long_transcript(projects / "-home-long")
    shutil.copytree(ROOT / "data" / "examples" / "experiment" / "1_raw", ws / "data" / "1_raw", dirs_exist_ok=True)
    shutil.copytree(ROOT / "data" / "examples" / "experiment" / "cohorts", ws / "data" / "cohorts", dirs_exist_ok=True)
    concept = ws / "data" / "1_raw" / "concepts" / "descriptions-paragraph" / "data-flywheel.txt"
    concept.write_text(concept.read_text() + "\n" + PAYLOAD + "\n")
    (ws / "chronicle.toml").write_text(f'# {SENTINEL}\n')
    (base / "outside.txt").write_text(SENTINEL)
    chronicle("ingest", "sessions", str(projects), root=ws)
    chronicle("run", "demo", "--provider", "echo", root=ws)
    chronicle("rebuild", root=ws)
    return ws


class Viewer:
    """`chronicle serve --port 0` in its own process; ``url`` is where it listens."""

    def __init__(self, ws: Path, *extra: str):
        env = {**os.environ, "CHRONICLE_ROOT": str(ws), "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen([sys.executable, "-m", "chronicle", "serve", "--port", "0", *extra], env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline() if self.proc.stdout else ""
        if "http://" not in line:
            self.proc.kill()
            raise AssertionError(f"serve did not start: {line!r} {self.proc.stderr.read() if self.proc.stderr else ''}")
        self.url = line.split("http://", 1)[1].split("/", 1)[0]
        self.url = "http://" + self.url

    def get(self, path: str, method: str = "GET") -> tuple[int, str, dict[str, str]]:
        req = urllib.request.Request(self.url + path, method=method)
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return resp.status, resp.read().decode(), dict(resp.headers)
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode(), dict(exc.headers)

    def stop(self) -> str:
        """SIGTERM, wait, and return what it wrote to stderr (its log)."""
        self.proc.terminate()
        try:
            _, err = self.proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        return err


def append_notes(ws: Path, n: int = 1) -> None:
    """Append ``n`` annotation events through the CLI, as another process writing to the log."""
    note = '{"type":"annotation","stream":"doc:x","target":"doc:x","key":"k","value":"v","author":"me"}\n'
    env = {**os.environ, "CHRONICLE_ROOT": str(ws)}
    done = subprocess.run([sys.executable, "-m", "chronicle", "append"], input=(note * n).encode(), env=env,
                          capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr

