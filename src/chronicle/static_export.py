"""`chronicle export html DIR` and `chronicle export markdown DIR`: sessions as files to keep or share.

An index and one page per session: its messages in order (a subagent's nested
under the call that spawned it), each tool call, tokens. Transcript text is
untrusted: in HTML it is rendered as Markdown with raw HTML off (markdown-it:
a ``<script>`` stays text, a ``javascript:`` link is no link) inside
autoescaped Jinja templates; in Markdown, ``<`` outside code fences becomes
``&lt;``, so a viewer that renders HTML in Markdown renders none of it. File
names are made from session ids character by character and always land inside
DIR. The tables are brought up to date first.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import jinja2
import polars as pl

from chronicle.errors import UsageError
from chronicle.projection import Engine, read_tables
from chronicle.secrets.mask import Masker
from chronicle.web.data import conversation
from chronicle.workspace import Workspace

TEMPLATES = Path(__file__).with_name("web") / "templates" / "export"
_FENCE = re.compile(r"^\s*(```|~~~)")


@dataclass(frozen=True)
class Written:
    files: int
    sessions: int
    dir: Path


def file_stem(session_id: str) -> str:
    """A file name for a session id: safe characters kept, anything else replaced, and a
    short hash added whenever the id had to change (so two ids never share a file)."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", session_id)[:80].lstrip(".") or "_"
    if safe != session_id:
        safe += "-" + hashlib.sha256(session_id.encode()).hexdigest()[:8]
    return safe


def markdown_text(text: str | None) -> str:
    """Untrusted text for a Markdown file: ``<`` outside code fences as ``&lt;``."""
    out, fenced = [], False
    for line in (text or "").splitlines():
        if _FENCE.match(line):
            fenced = not fenced
            out.append(line)
        else:
            out.append(line if fenced else line.replace("&", "&amp;").replace("<", "&lt;"))
    if fenced:
        out.append("```")  # an unclosed fence would swallow the rest of the page
    return "\n".join(out)


def export(ws: Workspace, out_dir: Path, kind: str, session: str | None = None) -> Written:
    engine = Engine.of(ws)
    engine.run(ws.open_log().snapshot(), ["conversations", "usage"])
    tables, _ = read_tables(ws.tables_dir, ["sessions", "messages", "tool_calls", "api_calls", "usage_by_session"])
    sessions = tables["sessions"].join(tables["usage_by_session"].select("session_id", "total_tokens", "cost_usd"),
                                       on="session_id", how="left").sort("first_time", "session_id", nulls_last=True)
    if session is not None:
        sessions = sessions.filter(pl.col("session_id") == session)
        if not sessions.height:
            raise UsageError(f"no session {session!r} in the sessions table")
    env = _env(kind, Masker.of(ws))
    out_dir.mkdir(parents=True, exist_ok=True)
    root = out_dir.resolve()
    suffix = ".html" if kind == "html" else ".md"
    (root / "sessions").mkdir(exist_ok=True)
    rows = sessions.to_dicts()
    for s in rows:
        s["file"] = f"sessions/{file_stem(s['session_id'])}{suffix}"
    written = 0
    for s in rows:
        sid = s["session_id"]
        of = pl.col("session_id") == sid
        entries = conversation(tables["messages"].filter(of), tables["tool_calls"].filter(of),
                               tables["api_calls"].filter(of))
        target = (root / s["file"]).resolve()
        if root not in target.parents:  # never: file_stem keeps names plain; checked all the same
            raise UsageError(f"session {sid!r} would be written outside {root}")
        target.write_text(env.get_template(f"session{suffix}").render(s=s, entries=entries), encoding="utf-8")
        written += 1
    (root / f"index{suffix}").write_text(env.get_template(f"index{suffix}").render(sessions=rows), encoding="utf-8")
    return Written(files=written + 1, sessions=written, dir=root)


def _env(kind: str, masker: Masker) -> jinja2.Environment:
    # Every value a template prints is masked (finalize), and text is masked before Markdown
    # renders it (which could split a secret with emphasis).
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=kind == "html",
                             undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
                             finalize=masker.finalize)
    if kind == "html":
        from markdown_it import MarkdownIt

        md = MarkdownIt("commonmark", {"html": False})  # raw HTML in the text stays text
        env.filters["markdown"] = lambda text: jinja2.utils.markupsafe.Markup(md.render(masker.text(text or "")))
    else:
        env.filters["markdown"] = lambda text: markdown_text(masker.text(text or ""))
        env.filters["inline"] = lambda text: markdown_text(masker.text(" ".join((text or "").split())))
    env.filters["when"] = lambda t: t.strftime("%Y-%m-%d %H:%M:%S UTC") if t is not None else "-"
    env.filters["num"] = lambda n: f"{n:,}" if isinstance(n, (int, float)) else "-"
    return env
