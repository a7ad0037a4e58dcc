"""Prices: exact ids or dated aliases only; an imported table is an event the tables are priced by."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from chronicle.projections.usage import SHIPPED, price_key

from test_report import _assistant_line, _workspace, report
from conftest import ROOT

EXAMPLES = ROOT / "data" / "examples" / "claude-projects"


def test_a_model_is_priced_by_its_id_or_a_dated_alias_never_by_a_prefix() -> None:
    keys = set(SHIPPED["models"])
    assert price_key("claude-opus-4-20250514", keys) == "claude-opus-4"
    assert price_key("claude-sonnet-4-5-20250929", keys) == "claude-sonnet-4-5"
    assert price_key("claude-opus-4-7", keys) == "claude-opus-4-7"
    assert price_key("claude-opus-4-8", keys) is None, "not claude-opus-4 by prefix (3x too dear)"
    assert price_key("claude-opus-4-8-20270101", keys) is None
    assert price_key("haiku", keys) is None


def chronicle(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "chronicle", *args], env=env, capture_output=True, text=True,
                          timeout=120)


LITELLM = {
    "sample_spec": {"input_cost_per_token": 0.0, "litellm_provider": "one of ..."},
    "claude-opus-4-8": {"input_cost_per_token": 4e-06, "output_cost_per_token": 2e-05,
                        "cache_creation_input_token_cost": 5e-06, "cache_creation_input_token_cost_above_1hr": 8e-06,
                        "cache_read_input_token_cost": 4e-07, "litellm_provider": "anthropic"},
    "anthropic/claude-sonnet-4-5": {"input_cost_per_token": 3e-06, "output_cost_per_token": 1.5e-05,
                                    "cache_creation_input_token_cost": 3.75e-06, "cache_read_input_token_cost": 3e-07,
                                    "litellm_provider": "anthropic"},
    "gpt-5": {"input_cost_per_token": 1e-06, "output_cost_per_token": 1e-05, "litellm_provider": "openai"},
}


def test_an_imported_litellm_table_prices_the_tables_from_its_seq_on(tmp_path: Path) -> None:
    projects, env = _workspace(tmp_path, EXAMPLES)
    with open(projects / "-home-ana-repo" / "5e55a000-0000-4000-8000-000000000002.jsonl", "a") as fh:
        fh.write(_assistant_line("future", "2026-11-20T10:00:00.000Z", model="claude-opus-4-8", output=1_000_000))
    before = {r["model"]: r for r in report(env, "daily", "--timezone", "UTC", "--breakdown", "--since", "2026-11-20")}
    assert before["claude-opus-4-8"]["cost_usd"] is None and before["claude-opus-4-8"]["unpriced_calls"] == 1
    shown = chronicle(env, "show", "usage_daily", "--json")
    assert '"model":"claude-opus-4-8"' in shown.stdout and '"priced":false' in shown.stdout
    head = json.loads(chronicle(env, "stats", "--json").stdout)["head_seq"]
    prices = tmp_path / "model_prices_and_context_window.json"
    prices.write_text(json.dumps(LITELLM))
    imported = chronicle(env, "prices", "import", str(prices), "--json")
    assert imported.returncode == 0, imported.stderr
    assert json.loads(imported.stdout)["models"] == 2 and json.loads(imported.stdout)["format"] == "litellm"
    after = {r["model"]: r for r in report(env, "daily", "--timezone", "UTC", "--breakdown", "--since", "2026-11-20",
                                           "--no-ingest")}
    assert after["claude-opus-4-8"]["cost_usd"] == pytest.approx(3 * 4e-6 + 1_000_000 * 2e-5)
    daily = [json.loads(x) for x in chronicle(env, "show", "usage_daily", "--json").stdout.splitlines()]
    assert {r["price_table"] for r in daily} == {f"litellm-{hashlib.sha256(prices.read_bytes()).hexdigest()[:12]}"}
    assert not [r for r in daily if r["model"] == "claude-sonnet-4-5-20250929" and not r["priced"]], "a dated alias"
    # replay for an audit: as of the seq before the import, the shipped table priced it (and left 4-8 unpriced)
    replay = chronicle(env, "replay", "usage", "--as-of", str(head), "--out", str(tmp_path / "then"))
    assert replay.returncode == 0, replay.stderr
    then = pl.read_parquet(tmp_path / "then" / "usage_daily.parquet")
    assert set(then["price_table"]) == {SHIPPED["version"]}
    assert then.filter(pl.col("model") == "claude-opus-4-8")["priced"].to_list() == [False]
    again = chronicle(env, "prices", "import", str(prices))
    assert again.returncode == 0 and "already imported" in again.stdout
    table = [json.loads(x) for x in chronicle(env, "prices", "show", "--json").stdout.splitlines()]
    assert {r["model"] for r in table} == {"claude-opus-4-8", "claude-sonnet-4-5"}


@pytest.mark.parametrize("content, says", [
    (b"not json", "not JSON"),
    (json.dumps({"gpt-5": LITELLM["gpt-5"]}).encode(), "no Anthropic Claude models with prices"),
    (json.dumps({"version": "x", "models": {"m": [{"from": "2026-01-01", "input": -1, "output": 1,
                                                     "cache_write_5m": 1, "cache_write_1h": 1, "cache_read": 1}]}}).encode(),
     "models.m[0].input: -1 is not a rate"),
    (json.dumps({"version": "x", "models": {"m": [{"from": "soon", "input": 1, "output": 1, "cache_write_5m": 1,
                                                     "cache_write_1h": 1, "cache_read": 1}]}}).encode(),
     "models.m[0].from: 'soon' is not a date"),
])
def test_a_bad_price_file_is_refused_naming_what_is_wrong(tmp_path: Path, content: bytes, says: str) -> None:
    _, env = _workspace(tmp_path, EXAMPLES)
    bad = tmp_path / "prices.json"
    bad.write_bytes(content)
    proc = chronicle(env, "prices", "import", str(bad))
    assert proc.returncode == 2 and says in proc.stderr and "Traceback" not in proc.stderr
    assert "prices.imported" not in chronicle(env, "stats", "--json").stdout, "nothing was recorded"


LONG_CONTEXT = [  # (input, output, cache write, cache read) of one claude-sonnet-4 call each
    (150_000, 10_000, 0, 150_000), (250_000, 10_000, 0, 0), (100_000, 1_000, 150_000, 0), (199_999, 1, 0, 0),
    (0, 0, 0, 1_000_000)]


def _tiered(tokens: int, rate: float, above: float) -> float:
    return min(tokens, 200_000) * rate / 1e6 + max(tokens - 200_000, 0) * above / 1e6


def test_tokens_of_a_kind_above_200k_in_one_call_are_priced_at_the_long_context_rate(tmp_path: Path) -> None:
    projects, env = _workspace(tmp_path, EXAMPLES)
    with open(projects / "-home-ana-repo" / "long.jsonl", "w") as fh:
        for n, (i, o, cw, cr) in enumerate(LONG_CONTEXT):
            fh.write(json.dumps({"type": "assistant", "uuid": f"long{n}", "sessionId": "long", "cwd": "/tmp",
                                 "timestamp": f"2027-02-{n + 1:02d}T10:00:00.000Z", "requestId": f"req_long{n}",
                                 "version": "1.0.0", "message": {
                                     "id": f"msg_long{n}", "model": "claude-sonnet-4-20250514", "role": "assistant",
                                     "content": [{"type": "text", "text": "x"}],
                                     "usage": {"input_tokens": i, "output_tokens": o,
                                               "cache_creation_input_tokens": cw, "cache_read_input_tokens": cr}}},
                                separators=(",", ":")) + "\n")
    days = {r["date"]: r for r in report(env, "daily", "--timezone", "UTC", "--since", "2027-02-01")}
    for n, (i, o, cw, cr) in enumerate(LONG_CONTEXT):
        want = _tiered(i, 3, 6) + _tiered(o, 15, 22.5) + _tiered(cw, 3.75, 7.5) + _tiered(cr, 0.3, 0.6)
        assert days[f"2027-02-{n + 1:02d}"]["cost_usd"] == pytest.approx(want, abs=1e-6), n
    ccusage = os.environ.get("CCUSAGE") or shutil.which("ccusage")
    if ccusage:  # and as ccusage 20.0.24 prices them
        only = tmp_path / "only" / "projects" / "-p"
        only.mkdir(parents=True)
        shutil.copy(projects / "-home-ana-repo" / "long.jsonl", only / "long.jsonl")
        theirs = json.loads(subprocess.run([ccusage, "daily", "--json", "--offline", "--timezone", "UTC"],
                                           env={**env, "CLAUDE_CONFIG_DIR": str(tmp_path / "only")},
                                           capture_output=True, text=True, check=True).stdout)["daily"]
        for d in theirs:
            assert days[d["period"]]["cost_usd"] == pytest.approx(d["totalCost"], abs=1e-6), d["period"]
        assert len(theirs) == len(LONG_CONTEXT)
