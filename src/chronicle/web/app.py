"""``chronicle serve``: a read-only viewer over a workspace's tables and log.

aiohttp serves pages rendered with Jinja2 on the server (autoescaped: every
string from a transcript or a model is data, never markup), charts as inline
SVG, and one server-sent-events stream (``/live``) that tells open pages the
log or the tables changed, so they refresh their main content in place.
Nothing is fetched from the internet; no route changes state (GET only).
Request values are only ever compared with table values, never joined into a
path: the only files served are the package's own static folder.
"""

from __future__ import annotations

import asyncio
import time
import json
import logging
import sqlite3
import threading
from datetime import date, datetime, timezone
from pathlib import Path
from urllib.parse import quote

import jinja2
import msgspec
from markupsafe import Markup, escape
import polars as pl
from aiohttp import web

from chronicle import daemon_state, history
from chronicle import search as search_index
from chronicle.commands import search as search_cmd
from chronicle.committed import CHECKPOINTS
from chronicle.store import Snapshot, StoreError
from chronicle.store.head import log_head, redactions
from chronicle.web import charts
from chronicle.web.data import PER_PAGE, Page, TableCache, TableNotBuilt, TableView, conversation, live_stamp
from chronicle.secrets.mask import Masker
from chronicle.workspace import Workspace

HERE = Path(__file__).parent
log = logging.getLogger("chronicle.serve")
WS_KEY = web.AppKey("workspace", Workspace)
TABLES_KEY = web.AppKey("tables", TableCache)
ENV_KEY = web.AppKey("jinja", jinja2.Environment)
MASKING_KEY = web.AppKey("masking", object)
INTERVAL_KEY = web.AppKey("live_interval", float)
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
CONVERSATION_PAGE = 200  # top-level messages per page of a session
TEXT_LIMIT = 20_000  # characters of one message shown before "… (N more)"


# ------------------------------------------------------------------ helpers

class LogReader:
    """One EventLog for the server's life (it caches the parsed MANIFEST between
    snapshots); snapshots are taken under a lock because pages take them from
    worker threads."""

    def __init__(self, ws: Workspace):
        self.log = ws.open_log()
        self._lock = threading.Lock()

    def snapshot(self) -> Snapshot:
        with self._lock:
            return self.log.snapshot()

    def close(self) -> None:
        self.log.close()


READER_KEY = web.AppKey("reader", LogReader)
CATCH_UP_KEY = web.AppKey("catch_up", bool)


class _Masking:
    """The workspace's masker, made again when the log has changed (a finding allowed while
    the viewer runs is shown on a page asked for a moment later): looked at before a request
    is served, at most every ``EVERY`` seconds, since making one reads the log."""

    EVERY = 1.0

    def __init__(self, ws: Workspace):
        self.ws = ws
        self.stamp: tuple[int, ...] | None = None
        self.checked = float("-inf")
        self.masker = Masker.of(ws)

    def refresh(self) -> None:
        now = time.monotonic()
        if now - self.checked < self.EVERY:
            return
        self.checked = now
        stamp = live_stamp(self.ws.data)
        if stamp != self.stamp:
            self.masker, self.stamp = Masker.of(self.ws), stamp

    def finalize(self, value: object) -> object:
        return self.masker.finalize(value)


def _env(masking: _Masking) -> jinja2.Environment:
    # every value a page prints is masked: secrets in recorded text are never shown
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                             finalize=masking.finalize)
    env.filters["num"] = lambda v: "" if v is None else (f"{v:,.4g}" if isinstance(v, float) else f"{v:,}")
    env.filters["when"] = lambda v: v.strftime("%Y-%m-%d %H:%M:%S") if isinstance(v, datetime) else (v or "")
    env.filters["clip"] = _clip
    env.filters["cost"] = lambda v: "unpriced" if v is None else f"${v:,.4f}"
    return env


def _clip(text: str | None, limit: int = TEXT_LIMIT) -> str:
    if text is None:
        return ""
    return text if len(text) <= limit else text[:limit] + f"\n… ({len(text) - limit:,} more characters)"


def _arg(request: web.Request, name: str) -> str | None:
    v = request.query.get(name, "").strip()
    return v or None


def _int(request: web.Request, name: str, default: int | None = None) -> int | None:
    v = _arg(request, name)
    if v is None:
        return default
    try:
        return int(v)
    except ValueError:
        raise web.HTTPBadRequest(text=f"{name} must be a whole number") from None


def _date(request: web.Request, name: str) -> date | None:
    v = _arg(request, name)
    if v is None:
        return None
    try:
        return date.fromisoformat(v)
    except ValueError:
        raise web.HTTPBadRequest(text=f"{name} must be a date, YYYY-MM-DD") from None


def _render(request: web.Request, template: str, **context: object) -> web.Response:
    """The whole page, or only its main content when the live script asks for it."""
    env = request.app[ENV_KEY]
    partial = request.headers.get("X-Chronicle-Partial") == "1"
    query = {k: v for k, v in request.query.items() if k != "page"}
    behind = tables_behind(request.app[WS_KEY])
    html = env.get_template(template).render(partial=partial, path=request.path, query=query, behind=behind,
                                             catching_up=request.app[CATCH_UP_KEY], **context)
    return web.Response(text=html, content_type="text/html")


def _row(df: pl.DataFrame, column: str, value: str, what: str) -> dict:
    """The one row whose ``column`` is ``value``, or a 404 naming what was asked for."""
    found = df.filter(pl.col(column) == value).head(1)
    if not found.height:
        raise web.HTTPNotFound(text=f"no {what} {value!r} in the log's tables")
    return found.row(0, named=True)


def _options(df: pl.DataFrame | None, column: str) -> list[str]:
    if df is None or column not in df.columns:
        return []
    return sorted(str(v) for v in df[column].drop_nulls().unique().to_list())


def _eq(df: pl.DataFrame, filters: dict[str, str | None]) -> pl.DataFrame:
    for column, value in filters.items():
        if value is not None:
            df = df.filter(pl.col(column).cast(pl.String) == value)
    return df


# ------------------------------------------------------------------ pages

async def overview(request: web.Request) -> web.Response:
    ws, tables = request.app[WS_KEY], request.app[TABLES_KEY].view()
    by_type = tables.get("events_by_type")
    chart = charts.stacked_bars("events per day, by type", [], {})
    totals: list[dict] = []
    if by_type is not None and by_type.height:
        wide = (by_type.group_by("day", "type").agg(pl.col("events").sum())
                .pivot(on="type", index="day", values="events", sort_columns=True).sort("day").fill_null(0))
        days = wide.tail(60)
        chart = charts.stacked_bars("events per day, by type", [str(d) for d in days["day"]],
                                    {c: days[c].to_list() for c in days.columns if c != "day"})
        totals = (by_type.group_by("type").agg(pl.col("events").sum(), pl.col("bytes").sum())
                  .sort("events", descending=True).to_dicts())
    errors = tables.get("ingest_errors")
    error_page = Page.of(errors.sort("seq", descending=True), _int(request, "page", 1)) if errors is not None else None
    state = daemon_state.read_state(ws)
    running = daemon_state.is_running(ws)
    head = await asyncio.to_thread(lambda: request.app[READER_KEY].snapshot().head)
    return _render(request, "overview.html", title="Overview", chart=chart, totals=totals, errors=error_page,
                   daemon_state=state, running=running, head=head)


async def sessions(request: web.Request) -> web.Response:
    tables = request.app[TABLES_KEY].view()
    df = tables.require("sessions")
    usage = tables.get("usage_by_session")
    if usage is not None:
        df = df.join(usage.select("session_id", "calls", "total_tokens", "cost_usd", "unpriced_calls"),
                     on="session_id", how="left")
    else:
        df = df.with_columns(pl.lit(None, pl.Int64).alias(c) for c in ("calls", "total_tokens", "unpriced_calls")
                             ).with_columns(pl.lit(None, pl.Float64).alias("cost_usd"))
    all_rows = df
    project, model = _arg(request, "project"), _arg(request, "model")
    since, until = _date(request, "since"), _date(request, "until")
    if project:
        df = df.filter(pl.col("project") == project)
    if model:
        df = df.filter(pl.col("models").list.contains(model))
    if since:
        df = df.filter(pl.col("last_time").dt.date() >= since)
    if until:
        df = df.filter(pl.col("first_time").dt.date() <= until)
    sort = _arg(request, "sort") or "time"
    key = {"tokens": "total_tokens", "cost": "cost_usd", "time": "first_time"}.get(sort)
    if key is None:
        raise web.HTTPBadRequest(text="sort must be time, tokens or cost")
    df = df.sort(key, descending=True, nulls_last=True)
    models = sorted({m for ms in all_rows["models"].to_list() for m in (ms or [])})
    return _render(request, "sessions.html", title="Sessions", page=Page.of(df, _int(request, "page", 1)),
                   projects=_options(all_rows, "project"), models=models, sort=sort)


async def session(request: web.Request) -> web.Response:
    tables = request.app[TABLES_KEY].view()
    sid = request.match_info["session_id"]
    sessions_df = tables.require("sessions")
    found = _row(sessions_df, "session_id", sid, "session")
    messages = tables.get("messages")
    calls = tables.get("tool_calls")
    api = tables.get("api_calls")
    episodes = tables.get("episodes")
    conv = conversation(
        messages.filter(pl.col("session_id") == sid) if messages is not None else pl.DataFrame(),
        calls.filter(pl.col("session_id") == sid) if calls is not None else None,
        api.filter(pl.col("session_id") == sid) if api is not None else None) if messages is not None else []
    eps = episodes.filter(pl.col("session_id") == sid).sort("index").to_dicts() if episodes is not None else []
    labels = tables.get("labels")
    given = {(k, t): row for k, t, row in zip(labels["kind"], labels["target_id"], labels.to_dicts())} \
        if labels is not None else {}
    for e in eps:
        e["label"] = given.get(("episode", e["episode_id"]))
    commits = _session_links(tables, sid, given)
    # a long session is paged by top-level entries (a subagent's messages stay with the call that spawned them)
    at = _int(request, "at")
    number = _int(request, "page") or (_page_holding(conv, at) if at is not None else 1)
    pages = max(1, -(-len(conv) // CONVERSATION_PAGE))
    number = min(max(1, number), pages)
    page = Page(conv[(number - 1) * CONVERSATION_PAGE: number * CONVERSATION_PAGE], number, pages, len(conv))
    if pages > 1:  # the episodes that start on this page of the conversation
        shown = {m["uuid"] for m in page.rows if "uuid" in m}
        eps = [e for e in eps if e["prompt_uuid"] in shown]
    return _render(request, "session.html", title=f"Session {sid}", s=found, page=page,
                   episodes=eps, at=at, commits=commits)


def _session_links(tables: TableView, sid: str, given: dict) -> list[dict]:
    """The commits linked to a session: the best confidence, every method, and the label given."""
    links, commits = tables.get("session_commits"), tables.get("commits")
    if links is None:
        return []
    mine = links.filter(pl.col("session_id") == sid)
    rows = (mine.group_by("sha").agg(pl.col("repo").first(), pl.col("confidence").max(), pl.col("method").sort())
            .sort("confidence", "sha", descending=[True, False]))
    if commits is not None:
        rows = rows.join(commits.select("sha", "subject", "committed_at"), on="sha", how="left")
    out = rows.to_dicts()
    for r in out:
        r["label"] = given.get(("link", f"{sid}@{r['sha']}"))
    return out


async def review_page(request: web.Request) -> web.Response:
    """The review queue (read-only: labels are given with `chronicle label`)."""
    from chronicle.training import review
    from chronicle.training.tables import NAMES

    ws, tables = request.app[WS_KEY], request.app[TABLES_KEY].view()
    missing = [n for n in NAMES if tables.get(n) is None]
    if missing:
        raise TableNotBuilt(missing[0])
    kind = _arg(request, "kind")
    if kind is not None and kind not in review.KINDS:
        raise web.HTTPBadRequest(text=f"kind must be one of {', '.join(review.KINDS)}")
    below = ws.config.quality.review_below
    items = await asyncio.to_thread(review.queue, {n: tables.require(n) for n in NAMES}, below,
                                    kinds=(kind,) if kind else review.KINDS, limit=None)
    return _render(request, "review.html", title="Review", page=Page.of_rows(items, _int(request, "page", 1)),
                   kind=kind, kinds=review.KINDS, below=below)


def _page_holding(conv: list[dict], seq: int) -> int:
    """The conversation page whose entries hold the message recorded at ``seq``."""
    for i, m in enumerate(conv):
        nested = m.get("messages", []) + [am for c in m.get("calls", []) for am in c.get("agent_messages", [])]
        if m.get("seq") == seq or any(am.get("seq") == seq for am in nested):
            return i // CONVERSATION_PAGE + 1
    return 1


_HIT_OPEN, _HIT_CLOSE = "\x02", "\x03"  # marks sqlite puts around a hit; the text between is escaped
SEARCH_PAGE = 20


async def search_page(request: web.Request) -> web.Response:
    ws = request.app[WS_KEY]
    q = _arg(request, "q") or ""
    chosen = {k: _arg(request, k) for k in ("role", "kind", "project", "session_id", "agent_id", "tool", "stage",
                                            "template", "model", "cohort", "since", "until", "sort")}
    chosen["sort"] = chosen["sort"] or "rank"
    if chosen["sort"] not in ("rank", "time"):
        raise web.HTTPBadRequest(text="sort must be rank or time")
    since, until = _date(request, "since"), _date(request, "until")
    number = max(1, _int(request, "page", 1) or 1)
    hits, error, more = [], None, False
    if q:
        try:
            fts = search_index.compile_query(q)
        except search_index.QueryError as exc:
            error = str(exc).splitlines()[0]
        else:
            filters = {k: v for k, v in chosen.items() if v and k in search_index.FILTERS}
            found = await asyncio.to_thread(_search, ws, fts, filters, since, until, chosen["sort"], number)
            more = len(found) > SEARCH_PAGE
            hits = [_hit_view(h) for h in found[:SEARCH_PAGE]]
    roles = ["user", "assistant", "tool", "thinking", "system", "prompt", "response", "parsed", "commit"]
    return _render(request, "search.html", title=f"Search {q}" if q else "Search", q=q, chosen=chosen,
                   roles=roles, hits=hits, error=error, number=number, more=more)


def _search(ws: Workspace, fts: str, filters: dict[str, str], since: date | None, until: date | None,
            sort: str, number: int) -> list:
    """Hits of one page (and one more, to know whether a next page exists), the index caught up first."""
    if not search_cmd.current(ws):
        search_cmd.catch_up(ws)
    to_us = lambda d, end: int(datetime(d.year, d.month, d.day, tzinfo=timezone.utc).timestamp() * 1e6) + (  # noqa: E731
        86_400_000_000 - 1 if end else 0)
    with sqlite3.connect(f"file:{ws.tables_dir / search_index.INDEX_NAME}?mode=ro", uri=True) as db:
        return search_index.search(db, fts, filters, since_us=to_us(since, False) if since else None,
                                   until_us=to_us(until, True) if until else None, sort=sort,
                                   limit=SEARCH_PAGE + 1, offset=(number - 1) * SEARCH_PAGE,
                                   marks=(_HIT_OPEN, _HIT_CLOSE))


def _hit_view(h: search_index.Hit) -> dict:
    snippet = str(escape(h.snippet)).replace(_HIT_OPEN, "<mark>").replace(_HIT_CLOSE, "</mark>")
    if h.kind == "session" and h.session_id:
        href = f"/sessions/{quote(h.session_id, safe='')}?at={h.seq}#seq-{h.seq}"
        where = f"session {h.session_id}" + (f" (agent {h.agent_id})" if h.agent_id else "")
    elif h.kind == "document" and h.doc_id:
        href = f"/documents/{quote(h.doc_id, safe='')}"
        where = f"document {h.doc_id} ({h.stage}, {h.template}, {h.model})"
    else:
        href, where = f"/events/{h.seq}", f"commit {(h.doc_id or '')[:12]} in {h.project}"
    when = datetime.fromtimestamp(h.time_us / 1e6, timezone.utc).strftime("%Y-%m-%d %H:%M:%S") if h.time_us else ""
    return {"href": href, "where": where, "role": h.role, "tool": h.tool, "when": when, "snippet": Markup(snippet)}


_DOC_FILTERS = ("stage", "template_id", "model_id", "status", "cohort_id")


async def documents(request: web.Request) -> web.Response:
    df = request.app[TABLES_KEY].view().require("documents")
    chosen = {c: _arg(request, c) for c in _DOC_FILTERS}
    shown = _eq(df, chosen).sort("created_at", descending=True, nulls_last=True)
    options = {c: _options(df, c) for c in _DOC_FILTERS}
    return _render(request, "documents.html", title="Documents", page=Page.of(shown, _int(request, "page", 1)),
                   options=options, chosen=chosen)


def _doc_texts(reader: LogReader, doc_id: str) -> dict[str, object]:
    snap = reader.snapshot()
    out: dict[str, object] = {"prompt": None, "raw": None, "parsed": None, "response": None, "parses": []}
    types = set(snap.types())
    if "llm.prompt" in types:
        p = snap.frame("llm.prompt", ["doc_id", "prompt"]).filter(pl.col("doc_id") == doc_id).collect()
        out["prompt"] = p["prompt"][0] if p.height else None
    if "llm.response" in types:
        r = snap.frame("llm.response").filter(pl.col("doc_id") == doc_id).collect()
        if r.height:
            out["response"] = r.row(-1, named=True)
            out["raw"] = out["response"]["text"]  # type: ignore[index]
    if "parse.result" in types:
        ps = snap.frame("parse.result").filter(pl.col("doc_id") == doc_id).sort("seq").collect()
        out["parses"] = ps.to_dicts()
        out["parsed"] = ps["parsed"][-1] if ps.height else None
    return out


async def document(request: web.Request) -> web.Response:
    tables = request.app[TABLES_KEY].view()
    doc_id = request.match_info["doc_id"]
    docs = tables.require("documents")
    doc = _row(docs, "doc_id", doc_id, "document")
    lineage, cur, seen = [], doc["parent_doc_id"], {doc_id}
    while cur and cur not in seen:  # up: evaluation -> essay -> draft
        seen.add(cur)
        parent = docs.filter(pl.col("doc_id") == cur)
        if not parent.height:
            lineage.append({"doc_id": cur, "missing": True})
            break
        row = parent.row(0, named=True)
        lineage.append(row)
        cur = row["parent_doc_id"]
    # down: a draft's essays and their evaluations, an essay's evaluations (the depth the stages have)
    below = docs.filter(pl.col("parent_doc_id") == doc_id).with_columns(pl.lit(None, pl.String).alias("via"))
    below = pl.concat([below, docs.filter(pl.col("parent_doc_id").is_in(below["doc_id"].to_list()))
                       .with_columns(pl.col("parent_doc_id").alias("via"))], how="vertical_relaxed")
    children = below.sort("stage", "via", "template_id", "model_id", nulls_last=False).to_dicts()
    attempts = docs.filter(pl.col("logical_key_id") == doc["logical_key_id"]).sort("attempt", nulls_last=True)
    texts = await asyncio.to_thread(_doc_texts, request.app[READER_KEY], doc_id)
    return _render(request, "document.html", title=f"Document {doc_id}", doc=doc, lineage=list(reversed(lineage)),
                   children=children, attempts=attempts.to_dicts(), texts=texts)


def _heat(df: pl.DataFrame, row: str, col: str, title: str) -> object:
    g = df.group_by(row, col).agg(pl.col("score").mean().alias("mean"), pl.len().alias("n"),
                                  pl.col("scale").max().alias("scale"))
    rows = sorted(str(v) for v in g[row].unique().to_list())
    cols = sorted(str(v) for v in g[col].unique().to_list())
    values = {(str(r[row]), str(r[col])): r["mean"] for r in g.to_dicts()}
    counts = {(str(r[row]), str(r[col])): r["n"] for r in g.to_dicts()}
    scales = [s for s in g["scale"].to_list() if s is not None]
    return charts.heatmap(title, rows, cols, values, counts, max(scales) if scales else None)


async def scores(request: web.Request) -> web.Response:
    ev = request.app[TABLES_KEY].view().require("evaluation_results")
    cohorts = _options(ev, "origin_cohort_id")
    cohort = _arg(request, "cohort")
    scored = ev.filter(pl.col("score").is_not_null())
    if cohort:
        scored = scored.filter(pl.col("origin_cohort_id") == cohort)
    scope = f"cohort {cohort}" if cohort else "across experiments"
    judges = _heat(scored, "evaluation_template", "evaluation_llm_model",
                   f"mean score by evaluation template x judge model ({scope})")
    essays = _heat(scored.with_columns(pl.col("generation_template").fill_null("?"),
                                       pl.col("generation_model").fill_null("?")),
                   "generation_template", "generation_model", f"mean score by essay template x model ({scope})")
    by_cohort = (ev.filter(pl.col("score").is_not_null())
                 .group_by("origin_cohort_id").agg(pl.len().alias("n"), pl.col("score").mean().alias("mean"))
                 .sort("origin_cohort_id", nulls_last=True).to_dicts())
    return _render(request, "scores.html", title="Scores", judges=judges, essays=essays, cohorts=cohorts,
                   cohort=cohort, by_cohort=by_cohort)


async def usage(request: web.Request) -> web.Response:
    tables = request.app[TABLES_KEY].view()
    daily = tables.get("usage_daily")
    token_chart = cost_chart = charts.stacked_bars("", [], {})
    if daily is not None and daily.height:
        per = daily.group_by("day", "model").agg(pl.col("total_tokens").sum(), pl.col("cost_usd").sum())
        days = sorted(per["day"].unique().to_list())[-60:]
        per = per.filter(pl.col("day").is_in(days))
        models = sorted(str(m) for m in per["model"].unique().to_list())

        def series(column: str) -> dict[str, list[float]]:
            wide = {(r["day"], str(r["model"])): r[column] or 0 for r in per.to_dicts()}
            return {m: [wide.get((d, m), 0) for d in days] for m in models}
        token_chart = charts.stacked_bars("tokens per day, by model", [str(d) for d in days], series("total_tokens"))
        cost_chart = charts.stacked_bars("cost (USD) per day, by model (priced models only)", [str(d) for d in days],
                                         series("cost_usd"))
    by_model = tables.get("usage_by_model")
    return _render(request, "usage.html", title="Usage", token_chart=token_chart, cost_chart=cost_chart,
                   daily=Page.of(daily.sort("day", descending=True), _int(request, "page", 1)) if daily is not None
                   else None, by_model=by_model.to_dicts() if by_model is not None else [])


def _events_page(reader: LogReader, type_name: str | None, stream: str | None, from_seq: int | None,
                 to_seq: int | None) -> tuple[list[dict], list[str], int]:
    snap = reader.snapshot()
    types = snap.types()
    env = snap.envelope([type_name] if type_name else None)
    if stream:
        env = env.filter(pl.col("stream") == stream)
    if from_seq is not None:
        env = env.filter(pl.col("seq") >= from_seq)
    if to_seq is not None:
        env = env.filter(pl.col("seq") <= to_seq)
    rows = env.sort("seq", descending=True).head(PER_PAGE).collect().to_dicts() if types else []
    return rows, types, snap.head


async def events(request: web.Request) -> web.Response:
    type_name, stream = _arg(request, "type"), _arg(request, "stream")
    from_seq, to_seq = _int(request, "from_seq"), _int(request, "to_seq")
    rows, types, head = await asyncio.to_thread(_events_page, request.app[READER_KEY], type_name, stream, from_seq, to_seq)
    if type_name and type_name not in types:
        rows = []
    older = rows[-1]["seq"] - 1 if len(rows) == PER_PAGE and rows[-1]["seq"] > 1 else None
    return _render(request, "events.html", title="Events", rows=rows, types=types, head=head, type_name=type_name,
                   stream=stream, from_seq=from_seq, to_seq=to_seq, older=older)


def _one_event(reader: LogReader, seq: int) -> tuple[str, str] | None:
    snap = reader.snapshot()
    found = snap.envelope().filter(pl.col("seq") == seq).collect()
    if not found.height:
        return None
    type_name = found["type"][0]
    ev = next(iter(snap.events([type_name], seq_from=seq, seq_to=seq)), None)
    if ev is None:
        return None
    body = msgspec.json.format(msgspec.json.encode(ev), indent=2).decode()
    return type_name, body


async def event(request: web.Request) -> web.Response:
    try:
        seq = int(request.match_info["seq"])
    except ValueError:
        raise web.HTTPNotFound(text="an event is named by its seq, a whole number") from None
    found = await asyncio.to_thread(_one_event, request.app[READER_KEY], seq)
    if found is None:
        raise web.HTTPNotFound(text=f"no event with seq {seq}")
    return _render(request, "event.html", title=f"Event {seq}", seq=seq, type_name=found[0], body=found[1])


async def entity_history(request: web.Request) -> web.Response:
    kind, entity = request.match_info["kind"], request.match_info["entity_id"]
    if kind not in ("doc", "session", "episode", "action", "link"):
        raise web.HTTPNotFound(text="history is of a doc, a session, or the labels of an episode, action or link")

    def load() -> history.History:
        snap = request.app[READER_KEY].snapshot()
        if kind in ("episode", "action", "link"):
            return history.of_label_target(snap, kind, entity)
        return history.of_doc(snap, entity) if kind == "doc" else history.of_session(snap, entity)
    found = await asyncio.to_thread(load)
    page = Page.of_rows(found.events, _int(request, "page", 1), PER_PAGE * 4)
    rows = [{"seq": e.seq, "recorded_at": e.recorded_at, "type": e.type_name(), "what": history.describe(e)}
            for e in page.rows]
    return _render(request, "history.html", title=f"History of {kind} {entity}", kind=kind, entity=entity,
                   lineage=found.lineage, rows=rows, page=page)


async def live(request: web.Request) -> web.StreamResponse:
    """Server-sent events: ``change`` when the log or the tables moved; a comment every 15 s keeps proxies open."""
    ws = request.app[WS_KEY]
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                                       **SECURITY_HEADERS})
    await resp.prepare(request)
    last = live_stamp(ws.data)
    quiet = 0.0
    interval = request.app.get(INTERVAL_KEY, 1.0)
    try:
        await resp.write(b"retry: 2000\n\n")
        while True:
            await asyncio.sleep(interval)
            stamp = await asyncio.to_thread(live_stamp, ws.data)
            if stamp != last:
                last = stamp
                head = await asyncio.to_thread(lambda: request.app[READER_KEY].snapshot().head)
                await resp.write(f"event: change\ndata: {json.dumps({'head': head})}\n\n".encode())
                quiet = 0.0
            else:
                quiet += interval
                if quiet >= 15:
                    await resp.write(b": still here\n\n")
                    quiet = 0.0
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    return resp


# ------------------------------------------------------------------ the app

@web.middleware
async def guard(request: web.Request, handler) -> web.StreamResponse:
    """Read-only, with security headers; errors become plain pages with no stack trace."""
    if request.method not in ("GET", "HEAD"):
        return _error_page(request, 405, "this viewer is read-only")
    try:
        await asyncio.to_thread(request.app[MASKING_KEY].refresh)
        resp = await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return _error_page(request, exc.status, exc.text or exc.reason)
    except TableNotBuilt as exc:
        resp = _render(request, "missing.html", title="Not built yet", table=exc.name)
    except (StoreError, pl.exceptions.PolarsError, OSError, KeyError, ValueError) as exc:
        log.error("page %s failed: %s: %s", request.path, type(exc).__name__, exc)
        return _error_page(request, 500, "this page failed; the server log has the details")
    except Exception:  # the last line of defence: the browser never sees a trace
        log.exception("page %s failed", request.path)
        return _error_page(request, 500, "this page failed; the server log has the details")
    for k, v in SECURITY_HEADERS.items():
        resp.headers.setdefault(k, v)
    return resp


def _error_page(request: web.Request, status: int, message: str) -> web.Response:
    html = request.app[ENV_KEY].get_template("error.html").render(
        partial=False, path=request.path, query={}, title=f"{status}", status=status, message=message,
        behind=None, catching_up=True)
    return web.Response(status=status, text=html, content_type="text/html", headers=SECURITY_HEADERS)


async def _catching_up(app: web.Application):
    """While serving: whenever a table is behind the log, bring the tables up to date
    in a worker thread (one run at a time), so a page never stays behind for long.
    Derived tables only: nothing in the log changes."""
    task = asyncio.create_task(_catch_up_forever(app))
    yield
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass


async def _catch_up_forever(app: web.Application) -> None:
    ws, interval = app[WS_KEY], max(0.2, app.get(INTERVAL_KEY, 1.0))
    while True:
        try:
            if await asyncio.to_thread(tables_behind, ws):
                await asyncio.to_thread(_run_projections, ws)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a failing projection must not take the viewer down; pages say they lag
            log.warning("catching up the tables failed: %s", exc)
        await asyncio.sleep(interval)


def _run_projections(ws: Workspace) -> None:
    from chronicle.projection import Engine

    Engine.of(ws).run(ws.open_log().snapshot())


def tables_behind(ws: Workspace) -> tuple[int, int, bool] | None:
    """(the oldest table checkpoint, the log's head, whether a table predates a redaction) when some
    table lags the log, else None. Cheap: the checkpoints file and the log's MANIFEST and WAL, read
    without decoding events."""
    try:
        checkpoints = json.loads((ws.tables_dir / CHECKPOINTS).read_text())
    except (OSError, ValueError):
        checkpoints = {}
    head = log_head(ws.log_dir)
    oldest = min((cp.get("seq", 0) for cp in checkpoints.values()), default=0)
    done = redactions(ws.log_dir)
    redacted = any(cp.get("redactions", 0) != done for cp in checkpoints.values())
    return (oldest, head, redacted) if oldest < head or redacted else None


def make_app(ws: Workspace, live_interval: float = 1.0, catch_up: bool = True) -> web.Application:
    app = web.Application(middlewares=[guard])
    app[WS_KEY] = ws
    app[TABLES_KEY] = TableCache(ws.tables_dir)
    app[MASKING_KEY] = _Masking(ws)
    app[ENV_KEY] = _env(app[MASKING_KEY])
    app[INTERVAL_KEY] = live_interval
    app[READER_KEY] = LogReader(ws)
    app[CATCH_UP_KEY] = catch_up

    async def close_reader(app: web.Application) -> None:
        app[READER_KEY].close()
    app.on_cleanup.append(close_reader)
    if catch_up:
        app.cleanup_ctx.append(_catching_up)
    app.router.add_get("/", overview)
    app.router.add_get("/sessions", sessions)
    app.router.add_get("/sessions/{session_id}", session)
    app.router.add_get("/documents", documents)
    app.router.add_get("/documents/{doc_id}", document)
    app.router.add_get("/scores", scores)
    app.router.add_get("/usage", usage)
    app.router.add_get("/review", review_page)
    app.router.add_get("/search", search_page)
    app.router.add_get("/events", events)
    app.router.add_get("/events/{seq}", event)
    app.router.add_get("/history/{kind}/{entity_id}", entity_history)
    app.router.add_get("/live", live)
    app.router.add_static("/static/", HERE / "static", follow_symlinks=False, show_index=False)
    return app


def serve(ws: Workspace, host: str = "127.0.0.1", port: int = 8765, catch_up: bool = True) -> None:
    """Serve until SIGINT/SIGTERM; prints the address (the real port when ``port`` is 0)."""
    import signal

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")

    async def main() -> None:
        runner = web.AppRunner(make_app(ws, catch_up=catch_up), access_log=None, shutdown_timeout=2.0)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound = runner.addresses[0]
        print(f"chronicle viewer: http://{bound[0]}:{bound[1]}/  (Ctrl-C to stop)", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for s in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(s, stop.set)
        await stop.wait()
        await runner.cleanup()

    asyncio.run(main())
