"""`chronicle audit`: check recorded results against today's code, without calling any model.

- :func:`reparse` runs today's parsers over every recorded ok response and
  compares with the recorded ``parse.result``; with ``record`` it appends the
  new results as ``parse.result`` events with provenance ``audit:reparse``
  (recorded results are never overwritten; the tables read the latest).
- :func:`reprompt` re-renders one document's prompt from the definitions as
  they were recorded when the prompt was, and compares the hash.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, field

import polars as pl

from chronicle.events import ParseResult
from chronicle.experiment import parsers
from chronicle.experiment.definitions import parse as parse_definitions
from chronicle.experiment.render import RenderError, prompt_text, sha256_text
from chronicle.ingest.definition_snapshots import recorded
from chronicle.ingest.legacy import RUN_ID as LEGACY_RUN_ID
from chronicle.store import EventLog, Snapshot


class AuditError(LookupError):
    """The thing to audit is not in the log (names it)."""


@dataclass
class ReparseReport:
    checked: int = 0
    agree: int = 0
    disagreements: list[dict] = field(default_factory=list)
    #: Results whose finding (status and score) agrees and only the scale differs (say 7/9 then, 7/10 now).
    scale_only: list[dict] = field(default_factory=list)
    recorded: int = 0


def _found(status: str, parsed: str | None, score: float | None) -> tuple:
    """What a parser found: its status and score (its text, for a parser that gives no score)."""
    return (status, score) if score is not None else (status, parsed)


def reparse(log: EventLog, parser_name: str | None = None, stage: str | None = None, record: bool = False
            ) -> ReparseReport:
    snap = log.snapshot()
    report = ReparseReport()
    if "llm.response" not in snap.types() or "parse.result" not in snap.types():
        return report
    wanted = parsers.get(parser_name) if parser_name else None
    ok = snap.frame("llm.response", ["doc_id", "status", "text"]).filter(pl.col("status") == "ok").drop("status")
    prompts = snap.frame("llm.prompt", ["doc_id", "stage"])
    if stage:
        prompts = prompts.filter(pl.col("stage") == stage)
    latest = (snap.frame("parse.result", ["seq", "doc_id", "parser", "parser_version", "status", "parsed", "score",
                                          "scale", "provenance"])
              .sort("seq").group_by("doc_id").agg(pl.all().last()))
    rows = ok.join(prompts, on="doc_id").join(latest, on="doc_id").sort("doc_id").collect()
    events = []
    for row in rows.iter_rows(named=True):
        parser = wanted or parsers.PARSERS.get(row["parser"])
        if parser is None:
            report.disagreements.append({"doc_id": row["doc_id"], "why": f"recorded parser {row['parser']!r} no longer exists"})
            continue
        new = parser(row["text"])
        report.checked += 1
        same_finding = _found(row["status"], row["parsed"], row["score"]) == _found(new.status, new.parsed, new.score)
        if same_finding and row["scale"] == new.scale:
            report.agree += 1
            continue
        (report.scale_only if same_finding else report.disagreements).append({
            "doc_id": row["doc_id"], "stage": row["stage"],
            "recorded": {"parser": f"{row['parser']}@{row['parser_version']}", "status": row["status"],
                         "score": row["score"], "scale": row["scale"]},
            "now": {"parser": f"{parser.name}@{parser.version}", "status": new.status, "score": new.score,
                    "scale": new.scale, "reason": new.reason}})
        if record:
            digest = sha256_text(new.parsed) if new.parsed is not None else None
            events.append(ParseResult(
                stream=f"doc:{row['doc_id']}", event_id=f"reparse:{row['doc_id']}:{parser.name}@{parser.version}:"
                f"{digest or new.reason}", doc_id=row["doc_id"], parser=parser.name, parser_version=parser.version,
                status=new.status, parsed=new.parsed, score=new.score, scale=new.scale, reason=new.reason,
                parsed_sha256=digest, provenance="audit:reparse"))
    if events:
        report.recorded = sum(not ack.duplicate for ack in log.append(events))
    return report


@dataclass
class PromptAudit:
    doc_id: str
    match: bool
    recorded_sha256: str
    rendered_sha256: str | None
    template_match: bool
    detail: str = ""


def reprompt(snap: Snapshot, doc_id: str) -> PromptAudit:
    if "llm.prompt" not in snap.types():
        raise AuditError(f"no document {doc_id!r} in the log")
    found = snap.frame("llm.prompt").filter(pl.col("doc_id") == doc_id).collect()
    if not found.height:
        raise AuditError(f"no document {doc_id!r} in the log")
    p = found.row(0, named=True)
    if p["run_id"] == LEGACY_RUN_ID:
        return PromptAudit(doc_id, False, p["prompt_sha256"], None, False,
                           "imported by `chronicle ingest legacy`: the source project rendered this prompt from its own "
                           "definitions, which the log does not hold; legacy.source names the file it came from")
    then = snap.as_of(p["seq"])
    d = parse_definitions(recorded(then))
    params = json.loads(p["params_json"])
    parent_text = None
    if p["parent_doc_id"]:
        parses = (then.frame("parse.result", ["seq", "doc_id", "status", "parsed"])
                  .filter(pl.col("doc_id") == p["parent_doc_id"]).sort("seq").collect())
        if not parses.height or parses["status"][-1] != "ok":
            return PromptAudit(doc_id, False, p["prompt_sha256"], None, False,
                               f"parent {p['parent_doc_id']} had no ok parse when this prompt was recorded")
        parent_text = parses["parsed"][-1]
    t = d.templates.get((p["stage"], p["template_id"]))
    if t is None:
        return PromptAudit(doc_id, False, p["prompt_sha256"], None, False,
                           f"template {p['stage']}/{p['template_id']} was not in the recorded definitions")
    template_match = (t.sha256 or "") == p["template_sha256"]
    try:
        text = prompt_text(d, p["stage"], p["template_id"], params.get("concept_ids", []), params.get("level", ""),
                           parent_text)
    except (RenderError, KeyError) as exc:
        return PromptAudit(doc_id, False, p["prompt_sha256"], None, template_match, f"cannot re-render: {exc}")
    rendered = sha256_text(text)
    detail = ""
    if rendered != p["prompt_sha256"]:
        diff = difflib.unified_diff(p["prompt"].splitlines(), text.splitlines(), "recorded", "re-rendered", lineterm="")
        detail = "\n".join(list(diff)[:40])
    return PromptAudit(doc_id, rendered == p["prompt_sha256"], p["prompt_sha256"], rendered, template_match, detail)
