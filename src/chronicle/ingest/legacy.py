"""``chronicle ingest legacy PATH``: import a DayDreaming data directory as events.

Two layouts, both read-only (the source is opened for reading and nothing else):

- the gens store, ``gens/<stage>/<gen_id>/`` with ``prompt.txt``, ``raw.txt``,
  ``parsed.txt``, ``metadata.json``, ``raw_metadata.json`` and
  ``parsed_metadata.json``. One attempt per gen_id, and the doc_id *is* the gen_id.
- the older folders, ``3_generation/<prefix>_{prompts,responses,responses_raw}/``
  and ``4_evaluation/evaluation_{prompts,responses,responses_raw}/`` holding
  ``<task_id>[_vN].txt``. Every raw version is an attempt (doc_id = the file's
  stem, ``<task_id>_v2``), in version order, each superseding the one before;
  the earlier ones get status ``replaced`` (the source does not say why it
  generated again, so they are neither ok nor failed, and never counted in a
  score). The ``_responses`` file is the accepted text of the last version.
  Prefixes ``links`` and ``generation`` are the source's old names for the draft
  and essay stages. Parents are found by task id: an essay's task id starts
  with its draft's, an evaluation's with its essay's (the longest match wins).

Each document becomes ``llm.prompt``, ``llm.response`` and ``parse.result`` (run
id ``legacy``, logical key ``legacy:<stage>:<task_id>``), and a
``legacy.source`` naming the files, their sha256 and the source's metadata.
Event ids derive from the old ids, so importing again adds nothing; a source
file that changed since it was imported is reported and left as first
imported (the log never rewrites). Problems (malformed metadata, text that is
not UTF-8, a stage it does not know) are reported by file and the import goes on.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from chronicle.events import Event, LegacySource, LlmPrompt, LlmResponse, ParseResult
from chronicle.events.llm import usage_fields
from chronicle.experiment import parsers
from chronicle.store import EventLog, Snapshot

RUN_ID = "legacy"
STAGES = ("draft", "essay", "evaluation")
#: The older folders' prefixes, by stage (``links`` and ``generation`` are the source's first names).
PREFIX_STAGE = {"draft": "draft", "links": "draft", "essay": "essay", "generation": "essay",
                "evaluation": "evaluation"}
_VERSION = re.compile(r"^(?P<task>.+)_v(?P<n>\d+)$")
_BATCH = 2000


class LegacyError(Exception):
    """PATH is not a DayDreaming data directory."""


@dataclass
class _File:
    rel: str
    sha256: str
    size: int
    mtime: float
    text: str


@dataclass
class LegacyDoc:
    stage: str
    task_id: str
    doc_id: str
    layout: str
    attempt: int = 1
    status: str = "ok"
    files: dict[str, _File] = field(default_factory=dict)
    metadata: dict[str, object] = field(default_factory=dict)
    parent_task_id: str | None = None
    parent_from: str | None = None
    parent_doc_id: str | None = None
    supersedes: str | None = None
    #: Whether the accepted (parsed) text belongs to this attempt.
    current: bool = True

    def text(self, role: str) -> str | None:
        f = self.files.get(role)
        return f.text if f else None

    def meta(self, name: str, key: str) -> object:
        m = self.metadata.get(name)
        return m.get(key) if isinstance(m, dict) else None


@dataclass
class LegacyReport:
    root: str
    documents: int = 0
    imported: int = 0
    unchanged: int = 0
    by_stage: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def data_root(path: Path) -> Path:
    """The data directory at or under ``path`` (a project folder holds it as ``data/``)."""
    for candidate in (path, path / "data"):
        if any((candidate / d).is_dir() for d in ("gens", "3_generation", "4_evaluation")):
            return candidate
    raise LegacyError(f"{path}: not a DayDreaming data directory (no gens/, 3_generation/ or 4_evaluation/ in it "
                      "or in its data/)")


# ------------------------------------------------------------------ reading

def _read(root: Path, path: Path, problems: list[str]) -> _File | None:
    """A source file, read once. Text that is not UTF-8 is kept with replacement
    characters and reported; its sha256 is of the original bytes."""
    rel = path.relative_to(root).as_posix()
    if path.is_symlink() and not path.resolve().is_relative_to(root.resolve()):
        problems.append(f"{rel}: a link out of the data directory; skipped")
        return None
    try:
        data = path.read_bytes()
        st = path.stat()
    except OSError as exc:
        problems.append(f"{rel}: cannot read: {exc.strerror or exc}")
        return None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        problems.append(f"{rel}: not UTF-8 at byte {exc.start}; imported with replacement characters "
                        "(legacy.source keeps the sha256 of the original bytes)")
        text = data.decode("utf-8", errors="replace")
    return _File(rel, hashlib.sha256(data).hexdigest(), len(data), st.st_mtime, text)


def _json(f: _File | None, problems: list[str]) -> object:
    if f is None:
        return None
    try:
        return json.loads(f.text)
    except json.JSONDecodeError as exc:
        problems.append(f"{f.rel}: line {exc.lineno}: malformed JSON ({exc.msg}); kept as text")
        return {"unparsed": f.text}


def _scan_gens(root: Path, problems: list[str]) -> list[LegacyDoc]:
    docs = []
    gens = root / "gens"
    if not gens.is_dir():
        return docs
    for stage_dir in sorted(p for p in gens.iterdir() if p.is_dir()):
        if stage_dir.name not in STAGES:
            problems.append(f"gens/{stage_dir.name}: unknown stage (expected {', '.join(STAGES)}); skipped")
            continue
        for gen_dir in sorted(p for p in stage_dir.iterdir() if p.is_dir()):
            doc = LegacyDoc(stage_dir.name, gen_dir.name, gen_dir.name, "gens")
            for role in ("prompt", "raw", "parsed"):
                if (gen_dir / f"{role}.txt").is_file() and (f := _read(root, gen_dir / f"{role}.txt", problems)):
                    doc.files[role] = f
            for name in ("metadata", "raw_metadata", "parsed_metadata"):
                if (gen_dir / f"{name}.json").is_file() and (f := _read(root, gen_dir / f"{name}.json", problems)):
                    doc.files[name] = f
                    doc.metadata[name] = _json(f, problems)
            if not doc.files:
                problems.append(f"{gen_dir.relative_to(root).as_posix()}: empty; skipped")
                continue
            parent = doc.meta("metadata", "parent_gen_id")
            if isinstance(parent, str) and parent.strip():
                doc.parent_task_id, doc.parent_from = parent.strip(), "metadata"
            if doc.meta("raw_metadata", "truncated") is True:
                doc.status = "truncated"
            docs.append(doc)
    return docs


def _scan_responses(root: Path, problems: list[str]) -> list[LegacyDoc]:
    folders: dict[tuple[str, str], dict[str, Path]] = {}  # (stage, kind) -> {stem: path}
    for parent in ("3_generation", "4_evaluation"):
        base = root / parent
        if not base.is_dir():
            continue
        for d in sorted(p for p in base.iterdir() if p.is_dir()):
            m = re.fullmatch(r"(?P<prefix>.+)_(?P<kind>prompts|responses|responses_raw)", d.name)
            if not m:
                continue
            stage = PREFIX_STAGE.get(m["prefix"])
            if stage is None:
                problems.append(f"{parent}/{d.name}: unknown stage prefix {m['prefix']!r}; skipped")
                continue
            files = folders.setdefault((stage, m["kind"]), {})
            for f in sorted(d.glob("*.txt")):
                files.setdefault(f.stem, f)
    docs = []
    for stage in STAGES:
        prompts = folders.get((stage, "prompts"), {})
        accepted = folders.get((stage, "responses"), {})
        versions: dict[str, list[tuple[int, str, Path]]] = {}
        for stem, path in folders.get((stage, "responses_raw"), {}).items():
            m = _VERSION.match(stem)
            task, n = (m["task"], int(m["n"])) if m else (stem, 0)
            versions.setdefault(task, []).append((n, stem, path))
        for task in sorted(set(versions) | set(accepted) | set(prompts)):
            attempts = sorted(versions.get(task, [])) or [(0, task, None)]
            previous = None
            for i, (_n, stem, raw_path) in enumerate(attempts, start=1):
                last = i == len(attempts)
                doc = LegacyDoc(stage, task, stem, "responses", attempt=i, status="ok" if last else "replaced",
                                supersedes=previous, current=last)
                if task in prompts and (f := _read(root, prompts[task], problems)):
                    doc.files["prompt"] = f
                if raw_path is not None and (f := _read(root, raw_path, problems)):
                    doc.files["raw"] = f
                if last and task in accepted and (f := _read(root, accepted[task], problems)):
                    doc.files["parsed"] = f
                    doc.files.setdefault("raw", f)  # no raw versions kept: the accepted text is the response
                docs.append(doc)
                previous = stem
    _link_by_prefix(docs)
    return docs


def _link_by_prefix(docs: list[LegacyDoc]) -> None:
    """An essay's task id is its draft's plus ``_<template>``; an evaluation's is its
    essay's plus ``_<template>_<model>``. Link each to the longest such prefix."""
    tasks = {s: sorted({d.task_id for d in docs if d.stage == s}, key=len, reverse=True) for s in STAGES}
    for doc in docs:
        parent_stage = {"essay": "draft", "evaluation": "essay"}.get(doc.stage)
        if parent_stage is None:
            continue
        match = next((t for t in tasks[parent_stage] if doc.task_id.startswith(t + "_")), None)
        if match is not None:
            doc.parent_task_id, doc.parent_from = match, "prefix"


def scan(root: Path) -> tuple[list[LegacyDoc], list[str]]:
    """Every document under a data directory, parents resolved to doc ids."""
    problems: list[str] = []
    docs = _scan_gens(root, problems) + _scan_responses(root, problems)
    current = {(d.stage, d.task_id): d.doc_id for d in docs if d.current}
    parent_stage = {"essay": "draft", "evaluation": "essay"}
    for d in docs:
        if d.parent_task_id:
            # a parent outside the import keeps its old id: it may be imported later
            d.parent_doc_id = current.get((parent_stage.get(d.stage, ""), d.parent_task_id), d.parent_task_id)
    return docs, problems


# ------------------------------------------------------------------ events

def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _str(value: object) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


def _parse_event(doc: LegacyDoc, raw: str | None, stream: str) -> ParseResult | None:
    parsed = doc.text("parsed")
    if doc.layout == "gens":
        if parsed is None:
            return None
        name = _str(doc.meta("parsed_metadata", "parser_name")) or "legacy"
        score = scale = None
        if doc.stage == "evaluation":
            try:
                score = float(parsed.strip())
            except ValueError:
                pass
            # the scale is a property of the parser; the source's parsers are ported under their names
            port = parsers.PARSERS.get(name)
            scale = port(raw).scale if port is not None and raw is not None else None
        return ParseResult(stream=stream, event_id=f"legacy:parse:{doc.stage}:{doc.doc_id}", doc_id=doc.doc_id,
                           parser=name, parser_version=0, status="ok", parsed=parsed, score=score, scale=scale,
                           parsed_sha256=_sha(parsed), provenance=f"legacy:{doc.files['parsed'].rel}")
    if not doc.current:
        return None
    if doc.stage == "evaluation":
        # The older layout kept the judge's text, not its score: score it with today's recommended parser.
        text = parsed if parsed is not None else raw
        if text is None:
            return None
        p = parsers.get(parsers.DEFAULT_FOR_STAGE["evaluation"])
        out = p(text)
        return ParseResult(stream=stream, event_id=f"legacy:parse:{doc.stage}:{doc.doc_id}", doc_id=doc.doc_id,
                           parser=p.name, parser_version=p.version, status=out.status, parsed=out.parsed,
                           score=out.score, scale=out.scale, reason=out.reason,
                           parsed_sha256=_sha(out.parsed) if out.parsed is not None else None,
                           provenance="legacy:scored-on-import")
    if parsed is None:
        return None
    return ParseResult(stream=stream, event_id=f"legacy:parse:{doc.stage}:{doc.doc_id}", doc_id=doc.doc_id,
                       parser="legacy", parser_version=0, status="ok", parsed=parsed, parsed_sha256=_sha(parsed),
                       provenance=f"legacy:{doc.files['parsed'].rel}")


def events_for(doc: LegacyDoc, root: Path) -> list[Event]:
    stream = f"doc:{doc.doc_id}"
    prompt = doc.text("prompt")
    raw = doc.text("raw")
    mode = _str(doc.meta("metadata", "mode"))
    model = _str(doc.meta("metadata", "llm_model_id")) or _str(doc.meta("raw_metadata", "llm_model_id"))
    params = {"legacy": doc.layout, "combo_id": _str(doc.meta("metadata", "combo_id")),
              "replicate": doc.meta("metadata", "replicate"), "prompt_recorded": prompt is not None}
    files_json = json.dumps({role: {"path": f.rel, "sha256": f.sha256, "bytes": f.size, "mtime": f.mtime}
                             for role, f in sorted(doc.files.items())}, sort_keys=True)
    # the source event's id names its content: the same files seen again add nothing
    digest = hashlib.sha256((files_json + "\0" + str(root)).encode()).hexdigest()[:16]
    out: list[Event] = [
        LegacySource(stream=stream, event_id=f"legacy:source:{doc.stage}:{doc.doc_id}:{digest}", doc_id=doc.doc_id,
                     task_id=doc.task_id, stage=doc.stage, layout=doc.layout, root=str(root), files_json=files_json,
                     metadata_json=json.dumps(doc.metadata, sort_keys=True, ensure_ascii=False),
                     parent_from=doc.parent_from),
        LlmPrompt.with_params(
            {k: v for k, v in params.items() if v is not None},
            stream=stream, event_id=f"legacy:prompt:{doc.stage}:{doc.doc_id}", doc_id=doc.doc_id,
            logical_key_id=f"legacy:{doc.stage}:{doc.task_id}", stage=doc.stage,
            template_id=_str(doc.meta("metadata", "template_id")) or "", template_sha256="",
            prompt_sha256=_sha(prompt) if prompt is not None else "", prompt=prompt or "",
            model_id="copy" if mode == "copy" else (model or ""), parent_doc_id=doc.parent_doc_id,
            run_id=RUN_ID,
            cohort_id=_str(doc.meta("metadata", "origin_cohort_id")) or _str(doc.meta("metadata", "cohort_id")),
            task_id=doc.task_id),
    ]
    if raw is not None:
        usage = doc.meta("raw_metadata", "usage")
        usage_json = json.dumps(usage, sort_keys=True) if isinstance(usage, dict) else None
        duration = doc.meta("raw_metadata", "duration_s")
        out.append(LlmResponse(
            stream=stream, event_id=f"legacy:response:{doc.stage}:{doc.doc_id}", doc_id=doc.doc_id,
            attempt=doc.attempt, status=doc.status, text=raw,
            finish_reason=_str(doc.meta("raw_metadata", "finish_reason")),
            usage_json=usage_json, **usage_fields(usage_json),
            latency_ms=float(duration) * 1000 if isinstance(duration, (int, float)) else None,
            supersedes_doc_id=doc.supersedes, text_sha256=_sha(raw)))
        parse = _parse_event(doc, raw, stream)
        if parse is not None:
            out.append(parse)
    return out


def _recorded_hashes(snap: Snapshot) -> dict[str, str]:
    """event_id -> content hash of every legacy prompt, response and parse already imported."""
    out: dict[str, str] = {}
    for type_name, column in (("llm.prompt", "prompt_sha256"), ("llm.response", "text_sha256"),
                              ("parse.result", "parsed_sha256")):
        if type_name in snap.types():
            rows = (snap.frame(type_name, ["event_id", column]).filter(pl.col("event_id").str.starts_with("legacy:"))
                    .collect())
            out.update(zip(rows["event_id"].to_list(), rows[column].fill_null("").to_list()))
    return out


def _content_hash(ev: Event) -> str | None:
    if isinstance(ev, LlmPrompt):
        return ev.prompt_sha256
    if isinstance(ev, LlmResponse):
        return ev.text_sha256 or ""
    if isinstance(ev, ParseResult):
        return ev.parsed_sha256 or ""
    return None


def import_legacy(log: EventLog, path: Path, on_progress: Callable[[int], None] | None = None) -> LegacyReport:
    root = data_root(path.resolve())
    docs, problems = scan(root)
    report = LegacyReport(root=str(root), documents=len(docs), problems=problems)
    recorded = _recorded_hashes(log.snapshot())
    pending: list[Event] = []
    for doc in docs:
        events = events_for(doc, root)
        changed = [ev for ev in events if ev.event_id in recorded and _content_hash(ev) != recorded[ev.event_id]]
        if changed:
            files = ", ".join(f.rel for f in doc.files.values())
            report.problems.append(f"{doc.stage}/{doc.doc_id}: changed since it was imported ({files}); "
                                   "the log keeps the version imported first")
            continue
        if all(ev.event_id in recorded for ev in events if _content_hash(ev) is not None):
            report.unchanged += 1
        else:
            report.imported += 1
            report.by_stage[doc.stage] = report.by_stage.get(doc.stage, 0) + 1
        pending.extend(events)
        if len(pending) >= _BATCH:
            log.append(pending)
            pending = []
        if on_progress:
            on_progress(1)
    if pending:
        log.append(pending)
    return report
