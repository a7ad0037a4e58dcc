"""`chronicle serve` over HTTP on loopback: escaping, no path out of the workspace, no stack
traces, read-only, 127.0.0.1 by default, and the live stream."""

from __future__ import annotations

import re
import socket
import time
import urllib.parse
import urllib.request
from pathlib import Path


from web_helpers import HOSTILE_SID, LONG_SID, SENTINEL, Viewer, append_notes




def _doc_with_payload(viewer: Viewer) -> str:
    """A document whose prompt and response carry the payload (the concept text flows into both)."""
    status, body, _ = viewer.get("/documents?stage=draft")
    assert status == 200
    for doc in re.findall(r'href="/documents/([^"?]+)"', body):
        s, page, _ = viewer.get(f"/documents/{doc}")
        if s == 200 and "&lt;script&gt;alert(&#34;pwned&#34;)" in page:
            return doc
    raise AssertionError("no draft carries the payload")


def test_every_page_answers_and_escapes_transcript_and_model_text(viewer: Viewer) -> None:
    doc = _doc_with_payload(viewer)
    pages = ["/", "/sessions", f"/sessions/{HOSTILE_SID}", "/documents", f"/documents/{doc}", "/scores", "/usage",
             "/events", "/events/1", f"/history/session/{HOSTILE_SID}", f"/history/doc/{doc}",
             "/sessions?sort=cost", "/sessions?project=/home/eve/<b>repo</b>", "/documents?stage=evaluation&page=2",
             "/review", "/review?kind=episode&page=2", "/history/episode/ep-none"]
    for path in pages:
        status, body, headers = viewer.get(urllib.parse.quote(path, safe="/?=&"))
        assert status == 200, path
        assert "<script>alert" not in body and "onerror=\"alert" not in body, path
        assert re.findall(r"<script\b[^>]*>", body) == ['<script src="/static/live.js" defer>'], path
        assert "script-src 'self'" in headers["Content-Security-Policy"], path
    _, session, _ = viewer.get(f"/sessions/{HOSTILE_SID}")
    # the text is there, as text: title, user message, assistant text, tool input and the project path
    assert session.count("&lt;script&gt;alert(&#34;pwned&#34;)&lt;/script&gt;") >= 4
    assert "/home/eve/&lt;b&gt;repo&lt;/b&gt;" in session and "&lt;/pre&gt;&lt;/article&gt;" in session


def test_no_url_reaches_a_file_outside_the_package_static_folder(viewer: Viewer, viewer_ws: Path) -> None:
    attempts = ["/static/../../chronicle.toml", "/static/%2e%2e/%2e%2e/%2e%2e/chronicle.toml",
                "/static/..%2f..%2f..%2fchronicle.toml", "/static/%252e%252e/chronicle.toml",
                f"/static/{viewer_ws}/chronicle.toml", "/documents/..%2f..%2f..%2fchronicle.toml",
                "/documents/../../outside.txt", "/history/doc/..%2F..%2F..%2Foutside.txt",
                "/history/session/%2e%2e%2f%2e%2e%2foutside.txt", "/events/..%2foutside.txt",
                "/sessions/..%2f..%2fchronicle.toml", "/static/", "/static", "/data/log/MANIFEST",
                "/chronicle.toml", "/?page=../../chronicle.toml", "/scores?cohort=../../outside.txt"]
    for path in attempts:
        # a raw socket: urllib would normalise the dots away before sending
        where = urllib.parse.urlsplit(viewer.url)
        with socket.create_connection((where.hostname, where.port), timeout=10) as s:
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
            raw = b""
            while chunk := s.recv(65536):
                raw += chunk
        text = raw.decode(errors="replace")
        assert SENTINEL not in text, path
        status = int(text.split(" ", 2)[1])
        assert status in (200, 400, 403, 404), (path, status)
    status, css, _ = viewer.get("/static/style.css")
    assert status == 200 and "--accent" in css


def test_errors_are_plain_pages_without_stack_traces(viewer_ws: Path, tmp_path: Path) -> None:
    v = Viewer(viewer_ws)
    try:
        for path, want in [("/nope", 404), ("/sessions/no-such-session", 404), ("/documents/no-such-doc", 404),
                           ("/events/999999999", 404), ("/events/abc", 404), ("/events?from_seq=abc", 400),
                           ("/sessions?since=yesterday", 400), ("/sessions?sort=evil", 400), ("/history/x/y", 404)]:
            status, body, _ = v.get(path)
            assert status == want, path
            assert "Traceback" not in body and "File \"" not in body and ".py" not in body, path
        # a table that cannot be read: a 500 page for the browser, the details in the server's log
        table = viewer_ws / "data" / "tables" / "documents.parquet"
        saved = table.read_bytes()
        table.write_bytes(b"PAR1 this is not parquet PAR1")
        try:
            status, body, _ = v.get("/documents")
        finally:
            table.write_bytes(saved)
        assert status == 500 and "this page failed" in body
        assert "Traceback" not in body and "parquet" not in body.lower() and str(viewer_ws) not in body
    finally:
        log = v.stop()
    assert "page /documents failed" in log


def test_read_only_and_bound_to_loopback_by_default(viewer: Viewer) -> None:
    assert urllib.parse.urlsplit(viewer.url).hostname == "127.0.0.1"
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        status, body, _ = viewer.get("/", method=method)
        assert status == 405 and "read-only" in body, method


def test_the_live_stream_says_when_an_event_lands(viewer_ws: Path, viewer: Viewer) -> None:
    req = urllib.request.Request(viewer.url + "/live")
    with urllib.request.urlopen(req, timeout=30) as stream:
        assert stream.headers["Content-Type"].startswith("text/event-stream")
        assert stream.readline().startswith(b"retry:")
        time.sleep(0.3)
        append_notes(viewer_ws)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            line = stream.readline()
            if line.startswith(b"event: change"):
                data = stream.readline()
                assert data.startswith(b"data: {\"head\":")
                return
        raise AssertionError("no change event within 20 s")


def test_lists_and_long_sessions_are_paginated(viewer: Viewer) -> None:
    first = viewer.get("/documents")[1]
    second = viewer.get("/documents?page=2")[1]
    ids = [set(re.findall(r'href="/documents/([^"?]+)"', page)) for page in (first, second)]
    assert len(ids[0]) == 50 and ids[1] and not ids[0] & ids[1]
    assert re.search(r"page 2 of \d+", second) and 'rel="prev"' in second
    pages = [viewer.get(f"/sessions/{LONG_SID}?page={n}")[1] for n in (1, 2, 3)]
    # the conversation: after the header (whose title is the first thing said), before the episodes
    conversations = [p.split('<p class="meta">', 1)[1].split("</p>", 1)[1].split('<section class="episodes">')[0]
                     for p in pages]
    assert all('<p class="meta">message number 0 ·' in p for p in pages), "untitled: the first prompt is its title"
    numbers = [set(map(int, re.findall(r"message number (\d+)", c))) for c in conversations]
    assert [len(n) for n in numbers] == [200, 200, 50]
    assert min(numbers[1]) == 200 and max(numbers[2]) == 449
    episodes = [set(map(int, re.findall(r'class="prompt">message number (\d+)', p.split('<section class="episodes">')[1])))
                for p in pages]
    assert episodes == numbers  # each page shows the episodes its messages start
    assert "page 3 of 3" in pages[2] and 'rel="next"' not in pages[2]
    beyond = viewer.get(f"/sessions/{LONG_SID}?page=99")
    assert beyond[0] == 200 and "page 3 of 3" in beyond[1]


def test_a_fresh_workspace_says_how_to_build_its_tables(tmp_path: Path) -> None:
    from chronicle.workspace import Workspace

    Workspace.at(tmp_path / "fresh").init()
    v = Viewer(tmp_path / "fresh")
    try:
        for path in ("/", "/sessions", "/documents", "/scores", "/usage", "/events"):
            status, body, _ = v.get(path)
            assert status == 200, path
        for path in ("/sessions", "/documents", "/scores"):
            assert "has not been built yet" in v.get(path)[1] and "chronicle rebuild" in v.get(path)[1], path
        assert v.get("/documents/x")[0] == 200 and "has not been built yet" in v.get("/documents/x")[1]
    finally:
        v.stop()


def test_search_page_escapes_hits_names_bad_queries_and_links_to_the_message(viewer: Viewer) -> None:
    status, body, _ = viewer.get("/search?q=pwned")
    assert status == 200
    assert "<script>alert" not in body and "&lt;script&gt;" in body and "<mark>pwned</mark>" in body
    assert f"/sessions/{HOSTILE_SID}?at=" in body and "#seq-" in body
    status, body, _ = viewer.get("/search?q=" + urllib.parse.quote('"message number 7"') + "&sort=time")
    assert status == 200 and f"/sessions/{LONG_SID}?at=" in body
    status, body, _ = viewer.get("/search?q=" + urllib.parse.quote("pwned AND"))
    assert status == 200 and "does not parse at position 10" in body and "Traceback" not in body
    status, _, _ = viewer.get("/search?q=x&sort=sideways")
    assert status == 400
    status, body, _ = viewer.get(f"/search?q=pwned&session_id={LONG_SID}")
    assert status == 200 and "no matches" in body
    status, body, _ = viewer.get("/search?q=flywheel&kind=document&role=prompt")
    assert status == 200 and "/documents/" in body and "/sessions/" not in body.split("<ol class=\"hits\">")[1]


def _notes_ws(tmp_path: Path, n: int) -> Path:
    from web_helpers import chronicle

    ws = tmp_path / "ws"
    chronicle("init", root=ws)
    append_notes(ws, n)
    chronicle("rebuild", root=ws)
    return ws


def _annotations_shown(body: str) -> int:
    row = re.search(r"type=annotation\">annotation</a></td><td class=\"n\">([\d,]+)</td>", body)
    return int(row.group(1).replace(",", "")) if row else 0


def test_the_viewer_catches_its_tables_up_with_the_log(tmp_path: Path) -> None:
    ws = _notes_ws(tmp_path, 3)
    v = Viewer(ws)
    try:
        assert _annotations_shown(v.get("/")[1]) == 3
        append_notes(ws, 4)  # no rebuild: the viewer brings the tables up to date itself
        deadline = time.monotonic() + 30
        while _annotations_shown(body := v.get("/")[1]) != 7 and time.monotonic() < deadline:
            time.sleep(0.3)
        assert _annotations_shown(body) == 7 and 'id="behind"' not in body
    finally:
        v.stop()


def test_a_page_rendered_from_tables_behind_the_log_says_so(tmp_path: Path) -> None:
    ws = _notes_ws(tmp_path, 3)
    v = Viewer(ws, "--stale")
    try:
        append_notes(ws, 2)
        status, body, _ = v.get("/")
        assert status == 200 and 'id="behind"' in body and "the log is at seq 5" in body and "at seq 3" in body
        assert _annotations_shown(body) == 3 and "chronicle rebuild" in body
    finally:
        v.stop()
