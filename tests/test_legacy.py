"""`chronicle ingest legacy`: a DayDreaming data directory (gens store and the older
_responses[_raw] folders) imported as events, read-only, with its ids and provenance."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
from pathlib import Path

import polars as pl
import pytest

from chronicle.store import EventLog
from chronicle.workspace import Workspace

from conftest import ROOT, run_cli

FIXTURE = ROOT / "tests" / "fixtures" / "daydreaming-legacy"
OLD = "combo_001_02_problem_solving_deepseek_r1_f"
OLD_ESSAY = OLD + "_creative-synthesis-v2"
OLD_EVAL = OLD_ESSAY + "_daydreaming-verification-v2_qwq_32b_f"


def _tree(root: Path) -> dict[str, tuple[str, int, int]]:
    """Every file and folder: sha256, mode, mtime (ns)."""
    out = {}
    for p in sorted(root.rglob("*")):
        st = p.lstat()
        digest = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else ""
        out[p.relative_to(root).as_posix()] = (digest, st.st_mode, st.st_mtime_ns)
    return out


@pytest.fixture
def source(tmp_path: Path):
    """A copy of the fixture, made read-only: an import that tried to write would fail."""
    src = tmp_path / "DayDreaming"
    shutil.copytree(FIXTURE, src)
    for p in [src, *src.rglob("*")]:
        p.chmod(p.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    yield src
    for p in [src, *src.rglob("*")]:
        p.chmod(p.stat().st_mode | stat.S_IWUSR)


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    Workspace.at(tmp_path / "ws").init()
    return tmp_path / "ws"


def _import(ws: Path, path: Path) -> dict:
    out = run_cli("ingest", "legacy", str(path), "--json", root=ws, check=True)
    return json.loads(out.stdout)


def _docs(ws: Path) -> pl.DataFrame:
    run_cli("rebuild", "experiments", root=ws, check=True)
    return pl.read_parquet(ws / "data" / "tables" / "documents.parquet")


def test_import_keeps_ids_versions_lineage_and_leaves_the_source_untouched(source: Path, ws: Path) -> None:
    before = _tree(source)
    report = _import(ws, source)  # the project folder: its data/ is found
    assert _tree(source) == before
    assert report["documents"] == 13 and report["imported"] == 13
    assert report["by_stage"] == {"draft": 6, "essay": 3, "evaluation": 4}

    docs = _docs(ws).sort("doc_id")
    by_id = {r["doc_id"]: r for r in docs.iter_rows(named=True)}
    # gens: the doc_id is the source's gen_id, its metadata gives template, model, parent, cohort
    draft = by_id["d_4x39qi5uipfzwgqp"]
    assert (draft["template_id"], draft["model_id"], draft["run_id"], draft["cohort_id"], draft["status"]) == (
        "links-v1", "deepseek_r1_f", "legacy", "cohort-2025-09", "ok")
    assert draft["usage_prompt_tokens"] == 120 and draft["usage_completion_tokens"] == 340
    assert by_id["e_1bfjh6t9a8gojqqy"]["parent_doc_id"] == "d_4x39qi5uipfzwgqp"
    assert by_id["v_3f60c6lp4ui66f0o"]["parent_doc_id"] == "e_1bfjh6t9a8gojqqy"
    assert by_id["d_a9qfrlsnmbqucpk"]["status"] == "truncated"
    assert by_id["e_5076bawvlb1x5cc0"]["model_id"] == "copy"
    # the older layout: one attempt per raw version, the last one ok and superseding the earlier
    v1, v2 = by_id[f"{OLD}_v1"], by_id[f"{OLD}_v2"]
    assert (v1["attempt"], v1["status"], v2["attempt"], v2["status"]) == (1, "replaced", 2, "ok")
    assert v2["lineage_prev_doc_id"] == f"{OLD}_v1" and v1["task_id"] == v2["task_id"] == OLD
    assert v2["parse_status"] == "ok" and v1["parse_status"] is None
    # parents by task-id prefix, pointing at the parent's current attempt
    assert by_id[OLD_ESSAY]["parent_doc_id"] == f"{OLD}_v2"
    assert by_id[f"{OLD_EVAL}_v2"]["parent_doc_id"] == OLD_ESSAY
    # an old stage name (links) is a draft; a stage it does not know is reported, not imported
    assert by_id["combo_002_links-v3_gemini_25_pro"]["stage"] == "draft"
    problems = "\n".join(report["problems"])
    assert "3_generation/notes_responses: unknown stage prefix 'notes'" in problems
    assert "gens/evaluation/v_548m13eeua2og2yf/metadata.json: line 2: malformed JSON" in problems
    assert "combo_003_bad_bytes_gpt.txt: not UTF-8 at byte 26" in problems

    # scores: the gens store's own parse (in_last_line on 0..9), the older layout scored on import;
    # a replaced version is never counted
    ev = pl.read_parquet(ws / "data" / "tables" / "evaluation_results.parquet")
    scores = dict(zip(ev["doc_id"].to_list(), ev["score"].to_list()))
    assert scores == {"v_3f60c6lp4ui66f0o": 7.0, f"{OLD_EVAL}_v2": 7.0, "v_548m13eeua2og2yf": 5.0}
    # gen_id as DayDreaming means it: the task's own id (the older layout's file name), not the version's doc_id
    assert dict(zip(ev["doc_id"].to_list(), ev["gen_id"].to_list()))[f"{OLD_EVAL}_v2"] == OLD_EVAL
    row = ev.filter(pl.col("gen_id") == "v_3f60c6lp4ui66f0o").row(0, named=True)
    assert (row["scale"], row["draft_template"], row["generation_model"]) == (9.0, "links-v1", "deepseek_r1_f")


def test_provenance_names_every_file_and_its_original_bytes(source: Path, ws: Path) -> None:
    _import(ws, source / "data")
    snap = EventLog(ws / "data" / "log").snapshot()
    src = snap.frame("legacy.source").collect()
    assert src.height == 13 and set(src["root"]) == {str((source / "data").resolve())}
    for row in src.iter_rows(named=True):
        for role, f in json.loads(row["files_json"]).items():
            assert hashlib.sha256((source / "data" / f["path"]).read_bytes()).hexdigest() == f["sha256"], (role, f)
    bad = src.filter(pl.col("doc_id") == "combo_003_bad_bytes_gpt").row(0, named=True)
    raw = json.loads(bad["files_json"])["raw"]
    assert raw["bytes"] == len((source / "data" / raw["path"]).read_bytes())
    gens = src.filter(pl.col("doc_id") == "d_4x39qi5uipfzwgqp").row(0, named=True)
    meta = json.loads(gens["metadata_json"])
    assert meta["raw_metadata"]["duration_s"] == 12.5 and gens["parent_from"] is None
    assert src.filter(pl.col("doc_id") == OLD_ESSAY)["parent_from"].to_list() == ["prefix"]
    parses = snap.frame("parse.result").filter(pl.col("doc_id") == "d_4x39qi5uipfzwgqp").collect()
    assert parses["provenance"].to_list() == ["legacy:gens/draft/d_4x39qi5uipfzwgqp/parsed.txt"]
    audit = run_cli("audit", "prompt", "d_4x39qi5uipfzwgqp", root=ws)
    assert audit.returncode == 1 and b"imported by `chronicle ingest legacy`" in audit.stdout


def test_importing_again_adds_nothing_and_a_changed_source_is_reported_not_rewritten(tmp_path: Path, ws: Path) -> None:
    src = tmp_path / "copy"
    shutil.copytree(FIXTURE, src)
    _import(ws, src)
    head = EventLog(ws / "data" / "log").snapshot().head
    again = _import(ws, src)
    assert again["imported"] == 0 and again["unchanged"] == 13
    assert EventLog(ws / "data" / "log").snapshot().head == head

    raw = src / "data" / "gens" / "draft" / "d_4x39qi5uipfzwgqp" / "raw.txt"
    first = raw.read_text()
    raw.write_text("regenerated in place\n")
    changed = _import(ws, src)
    assert any("draft/d_4x39qi5uipfzwgqp: changed since it was imported" in p for p in changed["problems"])
    assert EventLog(ws / "data" / "log").snapshot().head == head
    docs = _docs(ws)
    text = (EventLog(ws / "data" / "log").snapshot().frame("llm.response")
            .filter(pl.col("doc_id") == "d_4x39qi5uipfzwgqp").collect()["text"].to_list())
    assert text == [first] and docs.height == 13


def test_a_folder_that_is_not_a_daydreaming_data_directory_is_a_usage_error(tmp_path: Path, ws: Path) -> None:
    (tmp_path / "empty").mkdir()
    out = run_cli("ingest", "legacy", str(tmp_path / "empty"), root=ws)
    assert out.returncode == 2
    assert b"not a DayDreaming data directory (no gens/, 3_generation/ or 4_evaluation/" in out.stderr
    assert str(tmp_path / "empty").encode() in out.stderr
    assert os.listdir(tmp_path / "empty") == []
