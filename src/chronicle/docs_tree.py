"""``data/docs/<stage>/<doc_id>/``: every document as files, rebuilt from the log.

Each attempt gets ``prompt.txt``, ``raw.txt`` (the response, when there is
one), ``parsed.txt`` (the latest parse, when it succeeded) and
``metadata.json``. Like the tables, the tree is a projection: delete it and
``chronicle docs`` writes the same bytes again. Files are replaced
atomically and only when their bytes change. A ``doc_id`` or stage that could
leave the tree (``..``, ``/``) is refused, never followed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from chronicle.secrets.mask import Masker
from chronicle.experiment.definitions import STAGES
from chronicle.store import Snapshot

_SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


@dataclass
class DocsReport:
    written: int = 0
    unchanged: int = 0
    removed: int = 0
    refused: list[str] = field(default_factory=list)


def _write_if_changed(path: Path, data: bytes) -> bool:
    try:
        if path.read_bytes() == data:
            return False
    except FileNotFoundError:
        pass
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return True


def _frame(snap: Snapshot, type_name: str, columns: list[str]) -> pl.DataFrame | None:
    return snap.frame(type_name, columns).collect() if type_name in snap.types() else None


def materialize(snap: Snapshot, docs_dir: Path, *, prune: bool = False, masker: Masker | None = None) -> DocsReport:
    report = DocsReport()
    prompts = _frame(snap, "llm.prompt", ["doc_id", "logical_key_id", "stage", "task_id", "parent_doc_id",
                                          "template_id", "template_sha256", "model_id", "run_id", "cohort_id",
                                          "prompt", "prompt_sha256", "params_json", "recorded_at"])
    if prompts is None:
        return report
    responses = _frame(snap, "llm.response", ["doc_id", "attempt", "status", "text", "text_sha256", "finish_reason",
                                              "usage_json", "latency_ms", "http_status", "provider_request_id",
                                              "error", "supersedes_doc_id", "recorded_at"])
    parses = _frame(snap, "parse.result", ["seq", "doc_id", "parser", "parser_version", "status", "parsed",
                                           "parsed_sha256", "score", "scale", "reason"])
    docs = prompts.rename({"recorded_at": "prompted_at"})
    if responses is not None:
        docs = docs.join(responses.rename({"status": "response_status", "recorded_at": "responded_at"}),
                         on="doc_id", how="left")
    if parses is not None:
        latest = parses.sort("seq").group_by("doc_id").agg(pl.all().last()).drop("seq")
        docs = docs.join(latest.rename({"status": "parse_status", "reason": "parse_reason"}), on="doc_id", how="left")
    kept: set[Path] = set()
    for row in docs.sort("doc_id").iter_rows(named=True):
        doc_id, stage = row["doc_id"], row["stage"]
        if stage not in STAGES or not _SAFE.match(doc_id or ""):
            report.refused.append(f"{stage}/{doc_id}")
            continue
        target = docs_dir / stage / doc_id
        target.mkdir(parents=True, exist_ok=True)
        kept.add(target)
        mask = masker.text if masker is not None else (lambda text: text)  # secrets never reach the files
        files = {"prompt.txt": mask(row["prompt"]).encode()}
        if row.get("text") is not None:
            files["raw.txt"] = mask(row["text"]).encode()
        if row.get("parse_status") == "ok" and row.get("parsed") is not None:
            files["parsed.txt"] = mask(row["parsed"]).encode()
        meta = {k: v for k, v in row.items() if k not in ("prompt", "text", "parsed", "params_json", "usage_json")}
        meta["params"] = json.loads(row["params_json"]) if row.get("params_json") else None
        meta["usage"] = json.loads(row["usage_json"]) if row.get("usage_json") else None
        files["metadata.json"] = (json.dumps(meta, sort_keys=True, indent=1, default=str) + "\n").encode()
        for name in ("raw.txt", "parsed.txt"):
            if name not in files and (target / name).exists():
                (target / name).unlink()  # e.g. a re-parse that now fails
        for name, data in files.items():
            if _write_if_changed(target / name, data):
                report.written += 1
            else:
                report.unchanged += 1
    if prune:
        for stage_dir in (docs_dir / s for s in STAGES):
            if stage_dir.is_dir():
                for d in stage_dir.iterdir():
                    if d.is_dir() and d not in kept:
                        shutil.rmtree(d)
                        report.removed += 1
    return report
