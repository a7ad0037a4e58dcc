"""`chronicle demo`: the whole loop on embedded data, no server or key needed.

Appends the example events shipped in ``data/examples`` plus a batch of
generated responses, ingests the example Claude Code projects tree (a copy in
the workspace, as a user's ``~/.claude/projects`` would be), runs the example
experiment cohort (draft -> essay -> evaluation) on the offline ``echo``
provider, seals, rebuilds every projection, writes ``data/docs``, verifies,
and prints a summary. Every event has a
deterministic id and ingest is incremental, so running it again adds nothing.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Callable

import polars as pl

from chronicle import shipped
from chronicle.ingest.cohort_plans import plan_cohort
from chronicle.docs_tree import materialize
from chronicle.events import LlmResponse
from chronicle.experiment import providers
from chronicle.experiment.runner import RunOptions, Runner
from chronicle.ingest.sessions import SessionIngester
from chronicle.secrets.mask import Masker
from chronicle.secrets.scan import scan as scan_secrets
from chronicle.jsonl import parse_lines
from chronicle.projection import Engine
from chronicle.store import integrity
from chronicle.workspace import Workspace

GENERATED = 5_000


#: The example events ship as package data (chronicle.data), in a checkout and in a wheel.
EXAMPLES = shipped.EXAMPLES / "events.jsonl"
CLAUDE_PROJECTS = shipped.EXAMPLES / "claude-projects"
CODEX_SESSIONS = shipped.EXAMPLES / "codex-sessions"
EXPERIMENT = shipped.EXAMPLES / "experiment"


def _examples() -> bytes:
    if not EXAMPLES.exists():
        raise FileNotFoundError(f"{EXAMPLES}: example events missing from this installation (chronicle.data)")
    return EXAMPLES.read_bytes()


def run_demo(ws: Workspace, out: Callable[[str], None]) -> int:
    log = ws.init()
    examples = parse_lines(_examples().splitlines())
    acks = log.append(examples)
    generated = [
        LlmResponse(stream=f"doc:g-{i:05d}", event_id=f"demo:generated:{i}", doc_id=f"g-{i:05d}", attempt=1,
                    status="ok" if i % 10 else "truncated", text=f"response {i}",
                    finish_reason="stop" if i % 10 else "length")
        for i in range(GENERATED)
    ]
    for start in range(0, GENERATED, 1000):
        acks += log.append(generated[start : start + 1000])
    new = sum(not a.duplicate for a in acks)
    out(f"appended {new:,} new events ({len(acks) - new:,} already recorded) to {ws.log_dir}")
    copies = []
    for example in (CLAUDE_PROJECTS, CODEX_SESSIONS):  # one folder of each agent's sessions
        copies.append(ws.root / example.name)
        if not copies[-1].exists():
            shutil.copytree(example, copies[-1])
    summary = SessionIngester(log, ws.data / "ingest.lock", quiet_seconds=0, secrets_dir=ws.data).run(copies)
    out(f"ingest sessions (Claude Code and Codex CLI): {summary.line()}")
    scanned = scan_secrets(log, ws.data)
    out(f"secrets: scanned up to seq {scanned.upto_seq:,}, {scanned.findings} found")
    for sub in ("1_raw", "cohorts"):
        shutil.copytree(EXPERIMENT / sub, ws.data / sub, dirs_exist_ok=True)
    plan, d = plan_cohort(ws, "demo", record=True)
    run = asyncio.run(Runner(log, plan, d, providers.get(ws.config, "echo"), RunOptions()).run())
    out(f"run cohort demo (echo provider, offline): {run.ok} ok, {run.failed} failed, {run.calls} calls, "
        f"{run.already_done} already done")
    sealed = log.seal()
    out(f"sealed {sum(e.count for e in sealed):,} events into {len(sealed)} segment(s)")
    engine = Engine.of(ws)
    for o in engine.run(log.snapshot()):
        out(f"projection {o.name}: {o.action} at seq {o.seq} ({', '.join(f'{t}: {n:,} rows' for t, n in o.rows.items())})")
    docs = materialize(log.snapshot(), ws.data / "docs", prune=True, masker=Masker.of(ws))
    out(f"docs: {docs.written + docs.unchanged:,} files under {ws.data / 'docs'}")
    report = integrity.verify(log)
    for p in report.problems:
        out(f"{'ERROR' if p.fatal else 'warning'}: {p}")
    out(f"verify: {'ok' if report.ok else 'FAILED'} ({report.events:,} events, {report.segments} segments)")
    with pl.Config(tbl_hide_dataframe_shape=True, tbl_hide_column_data_types=True):
        out(str(pl.read_parquet(ws.tables_dir / "events_by_type.parquet").drop("first_seq", "last_seq")))
        out(str(pl.read_parquet(ws.tables_dir / "ingest_errors.parquet").select("seq", "path", "line_no", "error")))
        out(str(pl.read_parquet(ws.tables_dir / "usage_daily.parquet").select(
            "day", "model", "calls", "total_tokens", "priced", "cost_usd")))
        out(str(pl.read_parquet(ws.tables_dir / "episodes.parquet").select(
            pl.col("session_id").str.slice(0, 8), "index", pl.col("prompt").str.slice(0, 40), "actions", "reaction",
            "reaction_confidence")))
        out(str(pl.read_parquet(ws.tables_dir / "evaluation_scores_by_template_model.parquet")))
    cp = integrity.checkpoint(log)
    out(f"checkpoint {cp}")
    from chronicle.commands.output import command_name

    c = f"{command_name()} --root {ws.root}"
    out(f"tables: {ws.tables_dir}")
    out(f"try:  {c} show sessions")
    out(f"      {c} report daily --no-ingest")
    out(f"      {c} serve          # then open http://127.0.0.1:8765/")
    return 0 if report.ok else 1
