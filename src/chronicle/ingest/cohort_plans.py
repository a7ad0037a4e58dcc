"""Record cohort plans, and keep experiment definitions and cohorts in the log.

Shared by ``chronicle cohort plan``, ``chronicle run`` and the watch daemon:
a plan is recorded as ``cohort.defined`` only when its spec or its membership
changed, so calling this after every change costs nothing when nothing moved.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from chronicle.events import CohortDefined
from chronicle.experiment import cohorts
from chronicle.experiment.definitions import Definitions, parse as parse_definitions, read_folder
from chronicle.ingest.definition_snapshots import DefinitionsReport, ingest_definitions, recorded, recorded_versions
from chronicle.store import EventLog, Snapshot
from chronicle.workspace import Workspace

SPEC_NAME = "cohort.toml"


def definitions_folder(ws: Workspace) -> Path:
    return ws.data / "1_raw"


def cohorts_folder(ws: Workspace) -> Path:
    return ws.data / "cohorts"


def plan_cohort(ws: Workspace, cohort_id: str, *, record: bool,
                log: EventLog | None = None) -> tuple[cohorts.Plan, Definitions]:
    """Plan from the recorded definitions, after recording any change in data/1_raw.

    Without ``record`` (a dry run) nothing is written: the folder is read as it is.
    """
    log = log or ws.open_log()
    raw = definitions_folder(ws)
    if not record and raw.is_dir():
        files = read_folder(raw)
    else:
        if raw.is_dir():
            ingest_definitions(log, raw)
        files = recorded(log.snapshot())
    d = parse_definitions(files)
    plan = _plan(ws, cohort_id, d)
    if record:
        record_plan(log, plan)
    return plan, d


def _plan(ws: Workspace, cohort_id: str, d: Definitions) -> cohorts.Plan:
    path = cohorts.spec_path(cohorts_folder(ws), cohort_id)
    text, spec = cohorts.read_spec(path)
    return cohorts.plan(cohort_id, text, spec, d, path)


def record_plan(log: EventLog, plan: cohorts.Plan) -> bool:
    """Append ``cohort.defined`` if the spec or the membership changed; True if it did."""
    membership = cohorts.membership_json(plan)
    digest = hashlib.sha256((plan.spec + "\0" + membership).encode()).hexdigest()
    prev = _last_digest(log.snapshot(), plan.cohort_id)
    if prev == digest:
        return False
    log.append([CohortDefined(stream=f"cohort:{plan.cohort_id}", event_id=f"cohort:{plan.cohort_id}:{prev}->{digest}",
                              cohort_id=plan.cohort_id, spec_sha256=plan.spec_sha256, spec=plan.spec,
                              membership_json=membership)])
    return True


def _last_digest(snap: Snapshot, cohort_id: str) -> str:
    if "cohort.defined" not in snap.types():
        return ""
    last = (snap.frame("cohort.defined", ["seq", "cohort_id", "event_id"])
            .filter(pl.col("cohort_id") == cohort_id).sort("seq").collect())
    return last["event_id"][-1].rsplit("->", 1)[-1] if last.height else ""


def cohort_ids(ws: Workspace) -> list[str]:
    """Every cohort with a spec on disk (folder names starting with a dot are not cohorts)."""
    folder = cohorts_folder(ws)
    if not folder.is_dir():
        return []
    return sorted(p.parent.name for p in folder.glob(f"*/{SPEC_NAME}") if not p.parent.name.startswith("."))


@dataclass
class ExperimentSync:
    definitions: DefinitionsReport | None = None
    replanned: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def sync_experiments(ws: Workspace, log: EventLog, cohort_filter: set[str] | None = None) -> ExperimentSync:
    """Record changed definition files, then re-plan cohorts (all of them when
    definitions changed, since a new template or replication count changes
    membership; otherwise only ``cohort_filter``). A broken spec or definition
    set is reported in ``problems``, never raised: the other cohorts go on."""
    out = ExperimentSync()
    raw = definitions_folder(ws)
    if raw.is_dir():
        out.definitions = ingest_definitions(log, raw)
        d_report = out.definitions
        assert d_report.definitions is not None
        out.problems += [str(p) for p in d_report.definitions.errors]
        if d_report.added or d_report.changed or d_report.removed:
            cohort_filter = None
    d = parse_definitions(recorded(log.snapshot()))
    for cid in cohort_ids(ws):
        if cohort_filter is not None and cid not in cohort_filter:
            continue
        try:
            if record_plan(log, _plan(ws, cid, d)):
                out.replanned.append(cid)
        except cohorts.CohortError as exc:
            out.problems.append(str(exc))
    return out


def definitions_behind(ws: Workspace, snap: Snapshot) -> int:
    """Files in data/1_raw not yet recorded as they are now (removed ones included)."""
    raw = definitions_folder(ws)
    if not raw.is_dir():
        return 0
    files = read_folder(raw)
    latest = {r["path"]: r for r in recorded_versions(snap).to_dicts()}
    behind = sum(1 for rel, content in files.items()
                 if (r := latest.get(rel)) is None or r["kind"] == "removed"
                 or r["sha256"] != hashlib.sha256(content).hexdigest())
    return behind + sum(1 for rel, r in latest.items() if rel not in files and r["kind"] != "removed")


def cohorts_behind(ws: Workspace, snap: Snapshot) -> int:
    """Cohort specs on disk whose text differs from the last recorded plan's."""
    recorded_specs: dict[str, str] = {}
    if "cohort.defined" in snap.types():
        last = (snap.frame("cohort.defined", ["seq", "cohort_id", "spec_sha256"])
                .sort("seq").group_by("cohort_id").last().collect())
        recorded_specs = dict(zip(last["cohort_id"].to_list(), last["spec_sha256"].to_list()))
    behind = 0
    for cid in cohort_ids(ws):
        text = (cohorts_folder(ws) / cid / SPEC_NAME).read_text(encoding="utf-8")  # as read_spec reads it
        if recorded_specs.get(cid) != hashlib.sha256(text.encode()).hexdigest():
            behind += 1
    return behind
