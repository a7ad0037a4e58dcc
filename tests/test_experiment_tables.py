"""The experiment tables, the documents tree and the audits, over a real echo run."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import polars as pl
import pytest

from chronicle import audit
from chronicle.events import LlmPrompt
from chronicle.experiment import parsers
from chronicle.store import EventLog
from experiment_helpers import chronicle, make_workspace


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory) -> Path:
    ws = make_workspace(tmp_path_factory.mktemp("ran"))
    assert chronicle("run", "demo", "--provider", "echo", root=ws).returncode == 0
    proc = chronicle("rebuild", "experiments", root=ws)
    assert proc.returncode == 0, proc.stderr
    return ws


def table(ws: Path, name: str) -> pl.DataFrame:
    return pl.read_parquet(ws / "data" / "tables" / f"{name}.parquet")


def test_documents_have_the_index_columns_and_one_row_per_attempt(ran: Path) -> None:
    docs = table(ran, "documents")
    index = ["doc_id", "logical_key_id", "stage", "task_id", "parent_doc_id", "template_id", "model_id", "run_id",
             "prompt_hash", "parser", "status", "usage_prompt_tokens", "usage_completion_tokens", "usage_max_tokens",
             "created_at", "doc_dir", "raw_sha256", "parsed_sha256", "raw_chars", "parsed_chars", "meta_small",
             "lineage_prev_doc_id"]
    assert docs.columns[: len(index)] == index
    assert docs.height == docs["doc_id"].n_unique() == 84
    assert docs.group_by("stage").len().sort("stage").rows() == [("draft", 12), ("essay", 24), ("evaluation", 48)]
    row = docs.filter(pl.col("stage") == "evaluation").row(0, named=True)
    assert json.loads(row["meta_small"])["provider"] == "echo"


def test_score_tables_keep_the_source_column_names_and_agree_with_each_other(ran: Path) -> None:
    agg = table(ran, "aggregated_scores")
    assert agg.columns == ["gen_id", "parent_gen_id", "evaluation_template", "evaluation_llm_model", "score", "error",
                           "evaluation_response_path", "combo_id", "draft_template", "generation_template",
                           "generation_model", "origin_cohort_id", "generation_response_path", "input_mode",
                           "copied_from"]
    assert agg.height == 48 and agg["score"].null_count() == 0
    assert set(agg["input_mode"]) == {"llm", "copy"} and agg.filter(pl.col("input_mode") == "copy")["copied_from"].null_count() == 0
    by_tm = table(ran, "evaluation_scores_by_template_model")
    assert by_tm["n"].sum() == 48
    for row in by_tm.iter_rows(named=True):
        scores = agg.filter((pl.col("evaluation_template") == row["evaluation_template"])
                            & (pl.col("evaluation_llm_model") == row["evaluation_llm_model"]))["score"]
        assert row["mean"] == pytest.approx(scores.mean())
    final = table(ran, "final_results")
    assert {"legacy-last-line__echo_small", "novelty-judge-v1__echo_small"} <= set(final.columns)
    assert final.height == 24
    perfect = table(ran, "perfect_score_paths")
    assert (perfect["score"] == perfect["scale"]).all()
    ev = table(ran, "evaluation_results")
    assert perfect.height == ev.filter(pl.col("score") == pl.col("scale")).height
    usage = table(ran, "usage_by_model")
    assert usage["calls"].sum() == 84 and usage.filter(pl.col("model_id") == "copy")["cost"].null_count() == 1
    members = table(ran, "cohort_membership")
    assert members.height == 84 and set(members["state"]) == {"done"}
    # gen_id as DayDreaming means it: the task's id (v_/e_/d_...), chronicle's attempt in doc_id
    docs = table(ran, "documents")
    task_of = dict(zip(docs["doc_id"].to_list(), docs["task_id"].to_list()))
    assert ev["gen_id"].to_list() == [task_of[d] for d in ev["doc_id"].to_list()]
    assert ev["parent_gen_id"].to_list() == [task_of[d] for d in ev["essay_doc_id"].to_list()]
    assert set(final["gen_id"]) == set(docs.filter(pl.col("stage") == "essay")["task_id"])
    drafts = set(docs.filter(pl.col("stage") == "draft")["task_id"])
    assert set(agg["copied_from"].drop_nulls()) <= drafts and set(table(ran, "generation_results")["parent_gen_id"]) <= drafts


def _tree_digest(root: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        h.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def test_docs_tree_is_a_projection_delete_and_rebuild_gives_the_same_bytes(ran: Path) -> None:
    assert chronicle("docs", root=ran).returncode == 0
    docs = ran / "data" / "docs"
    first = _tree_digest(docs)
    one = next((docs / "evaluation").iterdir())
    assert sorted(p.name for p in one.iterdir()) == ["metadata.json", "parsed.txt", "prompt.txt", "raw.txt"]
    shutil.rmtree(docs)
    assert chronicle("docs", root=ran).returncode == 0
    assert _tree_digest(docs) == first


def test_reparse_catches_a_changed_parser_and_records_without_overwriting(tmp_path: Path, monkeypatch) -> None:
    ws = make_workspace(tmp_path)
    assert chronicle("run", "demo", "--provider", "echo", root=ws).returncode == 0
    log = EventLog(ws / "data" / "log")
    clean = audit.reparse(log)
    assert (clean.checked, clean.agree, clean.disagreements) == (84, 84, [])
    real = parsers.PARSERS["score"]
    broken = parsers.Parser("score", real.version, real.stage, lambda text: parsers.Parsed("ok", "0", 0.0, 10.0),
                            real.summary)
    monkeypatch.setitem(parsers.PARSERS, "score", broken)
    report = audit.reparse(log, stage="evaluation", record=True)
    changed = {d["doc_id"] for d in report.disagreements + report.scale_only}  # both are recorded
    assert report.checked == 48 and len(changed) > 0 and report.recorded == len(changed)
    results = log.snapshot().frame("parse.result").collect()
    assert results.height == 84 + len(changed)  # appended, nothing overwritten
    assert set(results.filter(pl.col("provenance") == "audit:reparse")["doc_id"]) == changed
    assert chronicle("rebuild", "documents", root=ws).returncode == 0
    scores = pl.read_parquet(ws / "data" / "tables" / "documents.parquet").filter(pl.col("doc_id").is_in(list(changed)))
    assert (scores["score"] == 0).all()  # the tables read the latest parse


def test_audit_prompt_uses_the_definitions_as_recorded_then(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path)
    assert chronicle("run", "demo", "--provider", "echo", root=ws).returncode == 0
    log = EventLog(ws / "data" / "log")
    prompts = log.snapshot().frame("llm.prompt").collect()
    doc = prompts.filter(pl.col("stage") == "evaluation")["doc_id"][0]
    template = ws / "data" / "1_raw" / "templates" / "evaluation" / "novelty-judge-v1.txt"
    template.write_text(template.read_text() + "\nA later edit.\n")
    assert chronicle("ingest", "definitions", root=ws).returncode == 0
    ok = chronicle("audit", "prompt", doc, "--json", root=ws)
    assert ok.returncode == 0 and json.loads(ok.stdout)["match"] is True
    # a prompt whose recorded text does not come from its template is caught
    forged = prompts.filter(pl.col("doc_id") == doc).row(0, named=True)
    log.append([LlmPrompt(**{**{k: forged[k] for k in LlmPrompt.__struct_fields__ if k in forged},
                             "doc_id": "v_forged", "event_id": "prompt:v_forged", "stream": "doc:v_forged",
                             "seq": 0, "recorded_at": None, "prompt_sha256": "0" * 64, "prompt": "something else"})])
    bad = chronicle("audit", "prompt", "v_forged", root=ws)
    assert bad.returncode == 1 and "DOES NOT MATCH" in bad.stdout
    assert chronicle("audit", "prompt", "nope", root=ws).returncode == 2


def test_reparse_compares_the_score_and_reports_a_scale_difference_apart(tmp_path: Path, monkeypatch) -> None:
    ws = make_workspace(tmp_path)
    assert chronicle("run", "demo", "--provider", "echo", root=ws).returncode == 0
    log = EventLog(ws / "data" / "log")
    real = parsers.PARSERS["score"]

    def rescaled(text: str) -> parsers.Parsed:
        found = real(text)
        return parsers.Parsed(found.status, found.parsed, found.score, 100.0 if found.score is not None else None,
                              found.reason)

    monkeypatch.setitem(parsers.PARSERS, "score", parsers.Parser("score", real.version, real.stage, rescaled,
                                                                 real.summary))
    report = audit.reparse(log, parser_name="score", stage="evaluation")
    scored = [d for d in report.scale_only if d["recorded"]["score"] is not None]
    assert report.disagreements == [] or all(d["recorded"]["score"] != d["now"]["score"] for d in report.disagreements)
    assert scored and all(d["now"]["scale"] == 100.0 and d["recorded"]["score"] == d["now"]["score"] for d in scored)
