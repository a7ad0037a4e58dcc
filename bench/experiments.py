"""Experiment benchmarks, side by side in one run.

1. Runner overhead: N calls against the loopback OpenAI-compatible server with a
   fixed latency at concurrency C, through the whole runner (render, record the
   prompt durably, call, record response + parse). Compared with the ideal rate
   (C / latency) and with a bare aiohttp loop making the same calls and recording
   nothing (the floor this machine and server allow).
2. Rebuilding `documents` and the score tables from 1M generated documents
   (prompt, response and parse events) against inserting the same rows into the
   SQLite documents index of the design and computing the score tables in SQL.
"""

from __future__ import annotations

import asyncio
import itertools
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import polars as pl

from chronicle.experiment import cohorts, definitions, providers
from chronicle.experiment.runner import RunOptions, Runner
from chronicle.projection import Engine, discover
from chronicle.store import EventLog


def _server(latency_ms: float) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-m", "chronicle.testing.openai_server", "--port", "0",
                             "--latency-ms", str(latency_ms)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    return proc, proc.stdout.readline().split()[-1]


def _definitions(root: Path, n_concepts: int) -> None:
    raw = root / "data" / "1_raw"
    (raw / "concepts" / "descriptions-sentence").mkdir(parents=True)
    (raw / "templates" / "draft").mkdir(parents=True)
    ids = [f"c{i:03d}" for i in range(n_concepts)]
    (raw / "concepts_metadata.csv").write_text("concept_id,name\n" + "".join(f"{c},Concept {c}\n" for c in ids))
    for c in ids:
        (raw / "concepts" / "descriptions-sentence" / f"{c}.txt").write_text(f"The idea called {c}.")
    (raw / "draft_templates.csv").write_text("template_id,template_name,description,parser,generator\nt,T,,,llm\n")
    (raw / "templates" / "draft" / "t.txt").write_text("Combine:{% for c in concepts %} {{ c.name }}{% endfor %}.")
    (raw / "llm_models.csv").write_text("id,model,provider,display_name\nm,bench-model,bench,Bench\n")
    spec = root / "data" / "cohorts" / "bench" / "cohort.toml"
    spec.parent.mkdir(parents=True)
    spec.write_text(f'[concepts]\nlevel = "sentence"\nk = 2\nfrom = {ids!r}\n[draft]\ntemplates = ["t"]\n'
                    'models = ["m"]\n'.replace("'", '"'))


def runner_overhead(calls: int, concurrency: int, latency_ms: float, repeats: int) -> dict:
    proc, url = _server(latency_ms)
    n_concepts = next(n for n in itertools.count(2) if n * (n - 1) // 2 >= calls)
    ours, bare = [], []
    try:
        for _ in range(repeats):
            root = Path(tempfile.mkdtemp(prefix="chronicle-bench-run-"))
            try:
                EventLog.init(root / "data" / "log").close()
                _definitions(root, n_concepts)
                d = definitions.parse(definitions.read_folder(root / "data" / "1_raw"))
                spec = root / "data" / "cohorts" / "bench" / "cohort.toml"
                text, parsed = cohorts.read_spec(spec)
                plan = cohorts.plan("bench", text, parsed, d, spec)
                provider = providers.configured({"providers": {"bench": {"base_url": url + "/v1",
                                                                         "concurrency": concurrency}}})["bench"]
                runner = Runner(EventLog(root / "data" / "log"), plan, d, provider, RunOptions(limit=calls))
                t = time.perf_counter()
                summary = asyncio.run(runner.run())
                ours.append(time.perf_counter() - t)
                assert summary.ok == calls, summary
            finally:
                shutil.rmtree(root, ignore_errors=True)
            bare.append(asyncio.run(_bare(url, calls, concurrency)))
    finally:
        proc.kill()
        proc.wait()
    ideal = calls * latency_ms / 1000 / concurrency
    return {"calls": calls, "concurrency": concurrency, "latency_ms": latency_ms, "ideal_s": ideal,
            "chronicle_s": statistics.median(ours), "bare_aiohttp_s": statistics.median(bare),
            "chronicle_of_ideal": ideal / statistics.median(ours), "bare_of_ideal": ideal / statistics.median(bare)}


async def _bare(url: str, calls: int, concurrency: int) -> float:
    sem = asyncio.Semaphore(concurrency)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:
        async def one(i: int) -> None:
            async with sem:
                async with session.post(url + "/v1/chat/completions", json={
                        "model": "bench-model", "messages": [{"role": "user", "content": f"Combine: {i}."}]}) as r:
                    await r.json()
        t = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(calls)))
        return time.perf_counter() - t


# --------------------------------------------------------------------- documents

def _generate(log: EventLog, n: int) -> None:
    """n documents: a quarter drafts, a quarter essays, half evaluations (two per essay)."""
    i = pl.int_range(0, n, eager=True)
    stage = pl.Series(["draft", "essay", "evaluation", "evaluation"]).gather(i % 4)
    frame = pl.DataFrame({"i": i, "stage": stage}).with_columns(
        pl.concat_str(pl.lit("doc_"), pl.col("i").cast(pl.String)).alias("doc_id")).with_columns(
        pl.when(pl.col("stage") == "essay").then(pl.concat_str(pl.lit("doc_"), (pl.col("i") - 1).cast(pl.String)))
        .when(pl.col("stage") == "evaluation")
        .then(pl.concat_str(pl.lit("doc_"), (pl.col("i") - 1 - (pl.col("i") % 4 == 3).cast(pl.Int64)).cast(pl.String)))
        .alias("parent_doc_id"))
    text = pl.concat_str(pl.lit("Some response text about idea "), pl.col("i").cast(pl.String), pl.lit(". SCORE: 7/10"))
    prompts = frame.select(
        pl.concat_str(pl.lit("doc:"), "doc_id").alias("stream"), pl.concat_str(pl.lit("prompt:"), "doc_id").alias("event_id"),
        "doc_id", pl.concat_str(pl.lit("key_"), "doc_id").alias("logical_key_id"), "stage",
        pl.concat_str(pl.lit("tpl-"), (pl.col("i") % 3).cast(pl.String)).alias("template_id"),
        pl.lit("a" * 64).alias("template_sha256"), pl.lit("b" * 64).alias("prompt_sha256"),
        pl.concat_str(pl.lit("Prompt for "), "doc_id").alias("prompt"),
        pl.concat_str(pl.lit("model-"), (pl.col("i") % 2).cast(pl.String)).alias("model_id"), "parent_doc_id",
        pl.concat_str(pl.lit('{"combo_id":"combo_'), (pl.col("i") // 16).cast(pl.String),
                      pl.lit('","max_tokens":4096,"provider":"bench"}')).alias("params_json"),
        pl.lit("run_1").alias("run_id"), pl.lit("bench").alias("cohort_id"), pl.col("doc_id").alias("task_id"))
    responses = frame.select(
        pl.concat_str(pl.lit("doc:"), "doc_id").alias("stream"), pl.concat_str(pl.lit("response:"), "doc_id").alias("event_id"),
        "doc_id", pl.lit(1).alias("attempt"), pl.lit("ok").alias("status"), text.alias("text"),
        pl.lit("stop").alias("finish_reason"),
        pl.lit('{"completion_tokens":40,"cost":0.0001,"prompt_tokens":120}').alias("usage_json"),
        pl.lit(850.0).alias("latency_ms"), pl.lit(200).alias("http_status"), pl.col("doc_id").alias("provider_request_id"),
        pl.lit(None, dtype=pl.String).alias("error"), pl.lit(None, dtype=pl.String).alias("supersedes_doc_id"),
        pl.lit("c" * 64).alias("text_sha256"))
    parses = frame.select(
        pl.concat_str(pl.lit("doc:"), "doc_id").alias("stream"), pl.concat_str(pl.lit("parse:"), "doc_id").alias("event_id"),
        "doc_id", pl.lit("score").alias("parser"), pl.lit(1).alias("parser_version"), pl.lit("ok").alias("status"),
        pl.lit("7").alias("parsed"),
        pl.when(pl.col("stage") == "evaluation").then((pl.col("i") % 11).cast(pl.Float64)).alias("score"),
        pl.when(pl.col("stage") == "evaluation").then(pl.lit(10.0)).alias("scale"),
        pl.lit(None, dtype=pl.String).alias("reason"), pl.lit("d" * 64).alias("parsed_sha256"),
        pl.lit("run:run_1").alias("provenance"))
    step = 250_000
    for lo in range(0, n, step):
        log.append_tables({"llm.prompt": prompts.slice(lo, step).to_arrow(),
                           "llm.response": responses.slice(lo, step).to_arrow(),
                           "parse.result": parses.slice(lo, step).to_arrow()}, dedupe=False)


_SQLITE_SCHEMA = """
CREATE TABLE documents (doc_id TEXT PRIMARY KEY, logical_key_id TEXT, stage TEXT, task_id TEXT, parent_doc_id TEXT,
  template_id TEXT, model_id TEXT, run_id TEXT, prompt_hash TEXT, parser TEXT, status TEXT,
  usage_prompt_tokens INTEGER, usage_completion_tokens INTEGER, usage_max_tokens INTEGER, created_at TEXT,
  doc_dir TEXT, raw_sha256 TEXT, parsed_sha256 TEXT, raw_chars INTEGER, parsed_chars INTEGER, meta_small TEXT,
  lineage_prev_doc_id TEXT, score REAL, scale REAL);
CREATE INDEX documents_key ON documents(logical_key_id);
CREATE INDEX documents_stage ON documents(stage, template_id, model_id);
CREATE INDEX documents_parent ON documents(parent_doc_id);
"""
_SQLITE_SCORES = """
CREATE TABLE evaluation_scores_by_template_model AS SELECT template_id, model_id, avg(score) AS mean, count(*) AS n
  FROM documents WHERE stage = 'evaluation' AND status = 'ok' GROUP BY template_id, model_id;
CREATE TABLE generation_results AS SELECT e.doc_id, e.template_id, e.model_id, avg(v.score) AS mean_score,
  count(v.doc_id) AS n FROM documents e LEFT JOIN documents v ON v.parent_doc_id = e.doc_id AND v.stage = 'evaluation'
  WHERE e.stage = 'essay' GROUP BY e.doc_id;
CREATE TABLE perfect_score_paths AS SELECT * FROM documents WHERE stage = 'evaluation' AND score = scale;
"""


def documents_rebuild(n: int, repeats: int) -> dict:
    root = Path(tempfile.mkdtemp(prefix="chronicle-bench-docs-"))
    try:
        log = EventLog.init(root / "log")
        _generate(log, n)
        engine = Engine(root / "tables", {k: v for k, v in discover().items() if k == "experiments"})
        ours = []
        for _ in range(repeats):
            t = time.perf_counter()
            engine.run(log.snapshot(), ["experiments"], full=True)
            ours.append(time.perf_counter() - t)
        docs = pl.read_parquet(root / "tables" / "documents.parquet")
        cols = ["doc_id", "logical_key_id", "stage", "task_id", "parent_doc_id", "template_id", "model_id", "run_id",
                "prompt_hash", "parser", "status", "usage_prompt_tokens", "usage_completion_tokens",
                "usage_max_tokens", "created_at", "doc_dir", "raw_sha256", "parsed_sha256", "raw_chars",
                "parsed_chars", "meta_small", "lineage_prev_doc_id", "score", "scale"]
        rows = docs.select(cols).with_columns(pl.col("created_at").cast(pl.String)).rows()
        theirs = []
        for r in range(repeats):
            db = sqlite3.connect(root / f"docs{r}.sqlite", isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            t = time.perf_counter()
            db.executescript(_SQLITE_SCHEMA)
            db.execute("BEGIN")
            db.executemany(f"INSERT INTO documents VALUES ({','.join('?' * len(cols))})", rows)
            db.execute("COMMIT")
            db.executescript(_SQLITE_SCORES)
            theirs.append(time.perf_counter() - t)
            db.close()
        log.close()
        return {"documents": n, "chronicle_s": statistics.median(ours), "sqlite_s": statistics.median(theirs),
                "speedup": statistics.median(theirs) / statistics.median(ours)}
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    quick = "--quick" in sys.argv
    print(runner_overhead(400 if quick else 2000, 64, 20, 3))
    print(documents_rebuild(100_000 if quick else 1_000_000, 3))
