"""`chronicle export html|markdown`: sessions as files, every transcript string escaped."""

from __future__ import annotations

import json
import re
from pathlib import Path

from chronicle.static_export import file_stem, markdown_text

from conftest import run_cli
from web_helpers import HOSTILE_SID, PAYLOAD, hostile_transcript


def _workspace(tmp_path: Path) -> Path:
    projects = tmp_path / "projects" / "-home-eve"
    hostile_transcript(projects)
    evil = json.dumps({"type": "user", "uuid": "e1", "sessionId": "../../outside/evil", "cwd": "/tmp",
                       "timestamp": "2026-03-06T10:00:00.000Z",
                       "message": {"role": "user", "content": "```\n<kept> in a fence\n```\nthen <b>bold</b>?"}})
    (projects / "evil.jsonl").write_text(evil + "\n")
    ws = tmp_path / "ws"
    run_cli("init", root=ws, check=True)
    run_cli("ingest", "sessions", str(tmp_path / "projects"), root=ws, check=True)
    return ws


def test_html_export_escapes_every_transcript_string_and_stays_in_its_folder(tmp_path: Path) -> None:
    ws = _workspace(tmp_path)
    out = tmp_path / "site"
    done = run_cli("export", "html", str(out), "--json", root=ws)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["sessions"] == 2
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert files[0] == "index.html" and all(f.startswith("sessions/") for f in files[1:]) and len(files) == 3
    assert not (tmp_path / "outside").exists(), "a session id is never a path"
    for page in out.rglob("*.html"):
        html = page.read_text()
        assert "<script" not in html and not re.search(r"<img\b", html) and "javascript:" not in html, page
        assert "Content-Security-Policy" in html
    hostile = (out / "sessions" / f"{HOSTILE_SID}.html").read_text()
    assert hostile.count("&lt;script&gt;alert") >= 4, "the payload is shown, as text"
    assert "<h1>title &lt;script&gt;" in hostile, "the summary titles the session"
    index = (out / "index.html").read_text()
    for href in re.findall(r'href="([^"]+)"', index):
        assert (out / href).is_file(), href


def test_markdown_export_escapes_markup_outside_code_fences(tmp_path: Path) -> None:
    ws = _workspace(tmp_path)
    out = tmp_path / "md"
    assert run_cli("export", "markdown", str(out), root=ws).returncode == 0
    hostile = (out / "sessions" / f"{HOSTILE_SID}.md").read_text()
    assert PAYLOAD not in hostile and "&lt;script>alert" in hostile
    evil = next(p for p in (out / "sessions").iterdir() if "evil" in p.name).read_text()
    assert "```\n<kept> in a fence\n```" in evil and "then &lt;b>bold&lt;/b>?" in evil
    index = (out / "index.md").read_text()
    for link in re.findall(r"\]\((sessions/[^)]+)\)", index):
        assert (out / link).is_file(), link
    one = tmp_path / "one"
    assert run_cli("export", "markdown", str(one), "--session", HOSTILE_SID[:8], root=ws).returncode == 0
    assert [p.name for p in (one / "sessions").iterdir()] == [f"{HOSTILE_SID}.md"]


def test_file_names_and_markdown_escaping() -> None:
    assert file_stem("5e55a000-0000-4000-8000-000000000001") == "5e55a000-0000-4000-8000-000000000001"
    odd = file_stem("../../etc/passwd")
    assert "/" not in odd and not odd.startswith(".") and odd != file_stem("__/__/etc/passwd")
    assert markdown_text("a <b> & c") == "a &lt;b> &amp; c"
    assert markdown_text("```\n<x>\n") == "```\n<x>\n```", "an open fence is closed"
