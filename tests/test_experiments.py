"""Definitions, cohorts and the runner, end to end through the CLI, against real servers on loopback."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest

from chronicle.events import LlmPrompt, LlmResponse
from chronicle.experiment import cohorts, definitions
from chronicle.store import EventLog
from conftest import SHARED
from experiment_helpers import SECRET, Server, chronicle, env_with_key, frames, make_workspace, provider_toml

CORPUS_RAW = SHARED / "corpus" / "daydreaming" / "1_raw"
needs_corpus = pytest.mark.skipif(not CORPUS_RAW.is_dir(), reason="corpus not present (../shared)")


# ------------------------------------------------------------------ definitions

@needs_corpus
def test_corpus_definitions_load_with_their_problems_named(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path)
    proc = chronicle("ingest", "definitions", "--from", str(CORPUS_RAW), "--json", root=ws)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    problems = {(p["path"], p["line"]): p["message"] for p in out["problems"]}
    assert "does not exist" in problems[("link_templates.csv", 2)]  # listed, no file
    assert "listed in no CSV" in problems[("templates/evaluation/creativity-metrics.txt", None)]
    assert all(p["severity"] == "warning" for p in out["problems"])
    again = json.loads(chronicle("ingest", "definitions", "--from", str(CORPUS_RAW), "--json", root=ws).stdout)
    assert again["added"] == [] and again["changed"] == [] and again["unchanged"] == len(out["added"])


def test_definition_errors_name_file_line_and_reason(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path)
    raw = ws / "data" / "1_raw"
    with open(raw / "draft_templates.csv", "a") as f:
        f.write("links-v1,Duplicate,again,,llm\nodd,Odd,unknown parser,no_such_parser,llm\n")
    (raw / "templates" / "draft" / "odd.txt").write_text("line one\n{% for c in concepts %}\n{{ c.name }\n")
    proc = chronicle("ingest", "definitions", "--json", root=ws)
    assert proc.returncode == 1
    found = {(p["path"], p["line"], p["severity"]): p["message"] for p in json.loads(proc.stdout)["problems"]}
    assert "duplicate template_id 'links-v1'" in found[("draft_templates.csv", 4, "error")]
    assert "unknown parser 'no_such_parser'" in found[("draft_templates.csv", 5, "error")]
    assert "Jinja2 syntax error" in found[("templates/draft/odd.txt", 3, "error")]


def test_changed_files_are_recorded_again_and_a_revert_is_a_new_version(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path)
    path = ws / "data" / "1_raw" / "templates" / "essay" / "essay-v1.txt"
    original = path.read_text()
    chronicle("ingest", "definitions", root=ws)
    for text in (original + "\nBe concise.\n", original):
        path.write_text(text)
        out = json.loads(chronicle("ingest", "definitions", "--json", root=ws).stdout)
        assert out["changed"] == ["templates/essay/essay-v1.txt"]
    snap = EventLog(ws / "data" / "log").snapshot()
    versions = snap.frame("definitions.snapshot").filter(pl.col("path") == "templates/essay/essay-v1.txt").collect()
    assert versions.height == 3 and versions["content"][-1] == original.encode()


# ------------------------------------------------------------------ cohorts

def test_plan_is_deterministic_and_recorded_once(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path)
    first = chronicle("cohort", "plan", "demo", "--json", root=ws)
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["members"] == {"draft": 12, "essay": 24, "evaluation": 48}
    chronicle("cohort", "plan", "demo", root=ws)
    snap = EventLog(ws / "data" / "log").snapshot()
    defined = snap.frame("cohort.defined").collect()
    assert defined.height == 1
    members = cohorts.members_from_json(defined["membership_json"][0])
    assert len({m.logical_key_id for m in members}) == len(members) == 84


def test_document_identity_includes_the_essay_model_where_the_source_id_does_not(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path)
    raw = ws / "data" / "1_raw"
    with open(raw / "llm_models.csv", "a") as f:
        f.write("echo_large,echo-large,echo,Echo large,testing\n")
    spec = ws / "data" / "cohorts" / "demo" / "cohort.toml"
    spec.write_text(spec.read_text().replace('[essay]\ntemplates = ["essay-v1", "copy-draft"]\nmodels = ["echo_small"]',
                                             '[essay]\ntemplates = ["essay-v1"]\nmodels = ["echo_small", "echo_large"]'))
    d = definitions.parse(definitions.read_folder(raw))
    text, parsed = cohorts.read_spec(spec)
    essays = [m for m in cohorts.plan("demo", text, parsed, d, spec).members if m.stage == "essay"]
    assert len({m.logical_key_id for m in essays}) == len(essays) == 24
    assert len({m.task_id for m in essays}) == 12  # the source recipe collides across essay models


@needs_corpus
def test_corpus_combo_and_draft_ids(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path)
    shutil.rmtree(ws / "data" / "1_raw")
    shutil.copytree(CORPUS_RAW, ws / "data" / "1_raw")
    (ws / "data" / "cohorts" / "paper").mkdir()
    (ws / "data" / "cohorts" / "paper" / "cohort.toml").write_text(
        '[concepts]\nlevel = "paragraph"\nsets = [["dearth-ai-discoveries", "default-mode-network", '
        '"economic-innovation-models", "economic-moat", "generator-verifier-gap"]]\n'
        '[draft]\ntemplates = ["creative-synthesis-v10"]\nmodels = ["gemini_25_pro"]\n'
        '[essay]\ntemplates = ["creative-synthesis-v10"]\nmodels = ["gemini_25_pro"]\n')
    proc = chronicle("cohort", "plan", "paper", root=ws)
    assert proc.returncode == 0, proc.stderr
    members = cohorts.members_from_json(
        EventLog(ws / "data" / "log").snapshot().frame("cohort.defined").collect()["membership_json"][0])
    draft, essay = members
    assert (draft.combo_id, draft.task_id, essay.task_id) == (
        "combo_v1_85128e4e5ef3", "d_5ezrffv9uf3lr37d", "e_sq5klak2lljyyom")


def test_plan_names_what_is_wrong_with_a_spec(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path)
    spec = ws / "data" / "cohorts" / "demo" / "cohort.toml"
    spec.write_text(spec.read_text().replace('"links-v1", ', '"links-v1", "missing-template", '))
    proc = chronicle("cohort", "plan", "demo", root=ws)
    assert proc.returncode == 2 and "unknown template 'missing-template'" in proc.stderr
    assert "cohort.toml" in proc.stderr


# ------------------------------------------------------------------ runs

def _one_ok_per_key(root: Path) -> pl.DataFrame:
    f = frames(root)
    ok = f["llm.response"].filter(pl.col("status") == "ok").join(f["llm.prompt"], on="doc_id")
    per_key = ok.group_by("logical_key_id").len()
    assert per_key["len"].max() == 1, "a logical key got two ok responses"
    return ok


def test_echo_run_goes_draft_to_essay_to_evaluation_and_resumes_to_nothing(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path)
    proc = chronicle("run", "demo", "--provider", "echo", "--json", root=ws)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert (summary["ok"], summary["failed"], summary["calls"]) == (84, 0, 72)  # 12 copies need no call
    ok = _one_ok_per_key(ws)
    assert ok.height == 84
    f = frames(ws)
    prompts, parses = f["llm.prompt"], f["parse.result"]
    evaluation = prompts.filter(pl.col("stage") == "evaluation").row(0, named=True)
    essay = prompts.filter(pl.col("doc_id") == evaluation["parent_doc_id"]).row(0, named=True)
    assert essay["stage"] == "essay"
    essay_parsed = parses.filter(pl.col("doc_id") == essay["doc_id"])["parsed"][0]
    assert essay_parsed in evaluation["prompt"]  # the judge saw the essay's parsed text
    again = json.loads(chronicle("run", "demo", "--provider", "echo", "--json", root=ws).stdout)
    assert (again["calls"], again["already_done"]) == (0, 84)


def test_a_v1_prompt_recorded_earlier_reads_as_v3(tmp_path: Path) -> None:
    from chronicle.events import LlmPromptV1

    with EventLog.init(tmp_path / "log") as lg:
        lg.append([LlmPromptV1(stream="doc:x", doc_id="x", logical_key_id="k", stage="draft", template_id="t",
                               template_sha256="s", prompt_sha256="p", prompt="hi", model_id="m",
                               params_json='{"combo_id": "c1", "max_tokens": 64}')])
        lg.seal()
        row = lg.snapshot().frame("llm.prompt").collect().row(0, named=True)
    assert row["v"] == 3 and row["run_id"] is None and row["prompt"] == "hi"
    assert (row["combo_id"], row["max_tokens"], row["provider"]) == ("c1", 64, None)


def test_v2_events_read_as_v3_with_the_typed_fields_a_v3_writer_records(tmp_path: Path) -> None:
    """Upcasting decodes the JSON a v2 event kept; a v3 event carries the same values typed."""
    from chronicle.events import LlmPromptV2, LlmResponseV2
    from chronicle.events.llm import usage_fields

    params = {"combo_id": "c1", "max_tokens": 4096, "provider": "openrouter", "temperature": 0.7}
    usage = '{"completion_tokens": 40, "cost": 1, "prompt_tokens": 120, "total_tokens": 160}'
    prompt = dict(doc_id="x", logical_key_id="k", stage="draft", template_id="t", template_sha256="s",
                  prompt_sha256="p", prompt="hi", model_id="m")
    with EventLog.init(tmp_path / "log") as lg:
        lg.append([LlmPromptV2(stream="doc:x", params_json=json.dumps(params, sort_keys=True), **prompt),
                   LlmResponseV2(stream="doc:x", doc_id="x", attempt=1, status="ok", usage_json=usage),
                   LlmPromptV2(stream="doc:y", params_json='{"max_tokens": "many"}', **{**prompt, "doc_id": "y"})])
        lg.seal()
        odd = {"combo_id": 5, "max_tokens": "64"}
        lg.append([LlmPromptV2(stream="doc:o", params_json=json.dumps(odd), **{**prompt, "doc_id": "o"}),
                   LlmPrompt.with_params(odd, stream="doc:p", **{**prompt, "doc_id": "p"})])
        lg.append([LlmPrompt.with_params(params, stream="doc:z", **{**prompt, "doc_id": "z"}),
                   LlmResponse(stream="doc:z", doc_id="z", attempt=1, status="ok", usage_json=usage,
                               **usage_fields(usage))])
        snap = lg.snapshot()
        prompts = snap.frame("llm.prompt").collect()
        responses = snap.frame("llm.response").collect()
    typed = ["combo_id", "provider", "max_tokens"]
    assert prompts["v"].to_list() == [3] * 5
    assert prompts.filter(pl.col("doc_id").is_in(["o", "p"])).select(typed).rows() == [("5", None, 64)] * 2
    assert prompts.filter(pl.col("doc_id") == "x").select(typed).row(0) == ("c1", "openrouter", 4096)
    assert prompts.filter(pl.col("doc_id") == "z").select(typed).row(0) == ("c1", "openrouter", 4096)
    assert prompts.filter(pl.col("doc_id") == "y").select(typed).row(0) == (None, None, None)  # not an int: unknown
    assert responses.select("prompt_tokens", "completion_tokens", "cost").rows() == [(120, 40, 1.0)] * 2


def test_misbehaving_server_retries_supersedes_and_keeps_the_key_secret(tmp_path: Path) -> None:
    server = Server("--latency-ms", "5", "--fault-rate", "1.0", "--faults", "429,500,error200,drop,truncate,slow",
                    "--retry-after", "0.3", "--slow-ms", "4000", "--require-key", SECRET)
    try:
        ws = make_workspace(tmp_path, provider_toml(server.url))
        first = chronicle("run", "demo", "--provider", "fake", "--stage", "draft", "--json", root=ws)
        summary = json.loads(first.stdout)
        f = frames(ws)
        responses = f["llm.response"].join(f["llm.prompt"].select("doc_id", "logical_key_id"), on="doc_id")
        truncated = responses.filter(pl.col("status") == "truncated")
        assert summary["failed"] == truncated.height > 0 and first.returncode == 1  # truncation is not retried blindly
        assert (truncated["finish_reason"] == "length").all()
        errors = responses.filter(pl.col("status") == "gen_error")
        assert set(errors["http_status"].to_list()) >= {429, 500, 200, None}  # None: dropped / timed out
        assert errors["error"].str.contains("timeout").any() and errors["error"].str.contains("error body").any()
        # every retry is its own doc, superseding the attempt before it
        retried = responses.filter(pl.col("attempt") == 2)
        assert retried.height == errors.height and set(retried["supersedes_doc_id"]) <= set(errors["doc_id"])
        # Retry-After (0.3 s) was honoured before the next attempt's prompt was recorded
        for row in errors.filter(pl.col("http_status") == 429).iter_rows(named=True):
            next_doc = retried.filter(pl.col("supersedes_doc_id") == row["doc_id"])["doc_id"][0]
            prompt_at = f["llm.prompt"].filter(pl.col("doc_id") == next_doc)["recorded_at"][0]
            assert (prompt_at - row["recorded_at"]).total_seconds() >= 0.3 * 0.99

        retry = chronicle("run", "demo", "--provider", "fake", "--retry-errors", "--json", root=ws)
        assert retry.returncode == 0, retry.stderr
        assert json.loads(retry.stdout)["to_do"]["draft"] == truncated.height
        outputs = first.stdout + first.stderr + retry.stdout + retry.stderr
        for _ in range(4):  # later stages meet their own faults; truncations wait for --retry-errors
            for extra in ((), ("--retry-errors",)):
                rest = chronicle("run", "demo", "--provider", "fake", *extra, root=ws)
                outputs += rest.stdout + rest.stderr
            if _one_ok_per_key(ws).height == 84:
                break
        assert _one_ok_per_key(ws).height == 84
        assert chronicle("rebuild", root=ws).returncode == 0
        _assert_secret_nowhere(ws, outputs)
        assert "[redacted]" in " ".join(frames(ws)["llm.response"]["error"].drop_nulls().to_list())
    finally:
        server.stop()


def _assert_secret_nowhere(ws: Path, outputs: str) -> None:
    assert SECRET not in outputs
    needle = SECRET.encode()
    scanned = 0
    for dirpath, _, names in os.walk(ws):
        for name in names:
            data = (Path(dirpath) / name).read_bytes()
            scanned += 1
            assert needle not in data, f"the API key was written to {Path(dirpath) / name}"
    assert scanned > 10


def test_sigkill_mid_run_then_resume_sends_nothing_twice(tmp_path: Path) -> None:
    server = Server("--latency-ms", "150")
    try:
        ws = make_workspace(tmp_path, provider_toml(server.url, concurrency=4))
        proc = subprocess.Popen([sys.executable, "-m", "chronicle", "run", "demo", "--provider", "fake"],
                                env=env_with_key(ws), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            f = frames(ws)
            if "llm.response" in f and f["llm.response"].height >= 10:
                break
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        before = frames(ws)
        done_before = set(before["llm.response"].filter(pl.col("status") == "ok").join(
            before["llm.prompt"], on="doc_id")["prompt_sha256"].to_list())
        assert 10 <= len(done_before) < 84
        sent_before = len(server.requests())
        resumed = chronicle("run", "demo", "--provider", "fake", "--json", root=ws)
        assert resumed.returncode == 0, resumed.stderr
        after = server.requests()[sent_before:]
        assert not {r["prompt_sha256"] for r in after} & done_before, "a prompt with an ok response was sent again"
        ok = _one_ok_per_key(ws)
        assert ok.height == 84
        # The provider's concurrency bounds the calls in flight (prompts are recorded ahead, calls are not).
        assert max(r["in_flight"] for r in after) == 4
    finally:
        server.stop()


def test_a_failed_run_says_why_grouped_and_counted(tmp_path: Path) -> None:
    server = Server("--fault-rate", "1.0", "--faults", "500", "--require-key", SECRET)
    try:
        ws = make_workspace(tmp_path, provider_toml(server.url, max_attempts=1))
        as_json = chronicle("run", "demo", "--provider", "fake", "--stage", "draft", "--limit", "2", "--json", root=ws)
        summary = json.loads(as_json.stdout)
        assert sum(summary["causes"].values()) == summary["failed"] == 2
        assert all(c.startswith("gen_error (HTTP 500)") for c in summary["causes"])
        proc = chronicle("run", "demo", "--provider", "fake", "--stage", "draft", "--limit", "3", root=ws)
        assert proc.returncode == 1
        why = [line for line in proc.stdout.splitlines() if line.startswith("  failed: ")]
        assert why and why[0].startswith("  failed: 3 x gen_error (HTTP 500)"), proc.stdout
        assert SECRET not in proc.stdout + as_json.stdout
    finally:
        server.stop()
