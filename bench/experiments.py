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
        pl.lit("run_1").alias("run_id"), pl.lit("bench").alias("cohort_id"), pl.col("doc_id").alias("task_id"),
        pl.concat_str(pl.lit("combo_"), (pl.col("i") // 16).cast(pl.String)).alias("combo_id"),
        pl.lit("bench").alias("provider"), pl.lit(4096).alias("max_tokens"))
    responses = frame.select(
        pl.concat_str(pl.lit("doc:"), "doc_id").alias("stream"), pl.concat_str(pl.lit("response:"), "doc_id").alias("event_id"),
        "doc_id", pl.lit(1).alias("attempt"), pl.lit("ok").alias("status"), text.alias("text"),
        pl.lit("stop").alias("finish_reason"),
        pl.lit('{"completion_tokens":40,"cost":0.0001,"prompt_tokens":120}').alias("usage_json"),
        pl.lit(850.0).alias("latency_ms"), pl.lit(200).alias("http_status"), pl.col("doc_id").alias("provider_request_id"),
        pl.lit(None, dtype=pl.String).alias("error"), pl.lit(None, dtype=pl.String).alias("supersedes_doc_id"),
        pl.lit("c" * 64).alias("text_sha256"), pl.lit(120).alias("prompt_tokens"), pl.lit(40).alias("completion_tokens"),
        pl.lit(0.0001).alias("cost"))
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
                           "parse.result": parses.slice(lo, step).to_arrow()})


_DOC_COLUMNS = ["doc_id", "logical_key_id", "stage", "task_id", "parent_doc_id", "template_id", "model_id", "run_id",
                "prompt_hash", "parser", "status", "usage_prompt_tokens", "usage_completion_tokens",
                "usage_max_tokens", "created_at", "doc_dir", "raw_sha256", "parsed_sha256", "raw_chars",
                "parsed_chars", "meta_small", "lineage_prev_doc_id",
                # what the score tables need besides the index design's columns (ours has them too)
                "cohort_id", "combo_id", "attempt", "parse_status", "score", "scale", "parse_reason", "usage_cost",
                "latency_ms"]
_SQLITE_SCHEMA = """
CREATE TABLE documents (doc_id TEXT PRIMARY KEY, logical_key_id TEXT, stage TEXT, task_id TEXT, parent_doc_id TEXT,
  template_id TEXT, model_id TEXT, run_id TEXT, prompt_hash TEXT, parser TEXT, status TEXT,
  usage_prompt_tokens INTEGER, usage_completion_tokens INTEGER, usage_max_tokens INTEGER, created_at TEXT,
  doc_dir TEXT, raw_sha256 TEXT, parsed_sha256 TEXT, raw_chars INTEGER, parsed_chars INTEGER, meta_small TEXT,
  lineage_prev_doc_id TEXT, cohort_id TEXT, combo_id TEXT, attempt INTEGER, parse_status TEXT, score REAL,
  scale REAL, parse_reason TEXT, usage_cost REAL, latency_ms REAL);
CREATE INDEX documents_key ON documents(logical_key_id);
CREATE INDEX documents_stage ON documents(stage, template_id, model_id);
CREATE INDEX documents_parent ON documents(parent_doc_id);
"""
# The same score tables the experiments projection builds, in SQL (std as the sample
# standard deviation, as Polars computes it). Not here: the latency median of
# usage_by_model (SQLite has no median) and cohort_membership (the bench plans no cohort).
_STD = "sqrt(max(0, (sum(score * score) - sum(score) * sum(score) / count(score)) / (count(score) - 1)))"
_SQLITE_SCORES = f"""
CREATE TABLE evaluation_results AS SELECT v.doc_id AS gen_id, v.parent_doc_id AS parent_gen_id, v.task_id,
  v.logical_key_id, v.template_id AS evaluation_template, v.model_id AS evaluation_llm_model, v.score, v.scale,
  CASE WHEN v.parse_status != 'ok' THEN v.parse_reason END AS error,
  v.doc_dir || '/raw.txt' AS evaluation_response_path, v.combo_id, d.template_id AS draft_template,
  d.model_id AS draft_model, e.parent_doc_id AS draft_doc_id, e.template_id AS generation_template,
  e.model_id AS generation_model, v.cohort_id AS origin_cohort_id, e.doc_dir || '/raw.txt' AS generation_response_path,
  CASE WHEN e.model_id = 'copy' THEN 'copy' ELSE 'llm' END AS input_mode,
  CASE WHEN e.model_id = 'copy' THEN e.parent_doc_id END AS copied_from, v.parser, v.created_at
  FROM documents v
  LEFT JOIN documents e ON e.doc_id = v.parent_doc_id AND e.stage = 'essay' AND e.status = 'ok'
  LEFT JOIN documents d ON d.doc_id = e.parent_doc_id AND d.stage = 'draft' AND d.status = 'ok'
  WHERE v.stage = 'evaluation' AND v.status = 'ok' ORDER BY origin_cohort_id, gen_id;
CREATE TABLE aggregated_scores AS SELECT gen_id, parent_gen_id, evaluation_template, evaluation_llm_model, score,
  error, evaluation_response_path, combo_id, draft_template, generation_template, generation_model, origin_cohort_id,
  generation_response_path, input_mode, copied_from FROM evaluation_results;
CREATE TABLE scored AS SELECT * FROM evaluation_results WHERE score IS NOT NULL;
CREATE INDEX scored_parent ON scored(parent_gen_id);
CREATE TABLE generation_results AS SELECT e.doc_id AS gen_id, e.parent_doc_id AS parent_gen_id, e.task_id,
  e.combo_id, e.template_id AS generation_template, e.model_id AS generation_model, e.cohort_id AS origin_cohort_id,
  e.parsed_chars, e.parse_status, s.mean_score, coalesce(s.n, 0) AS n_evaluations
  FROM documents e LEFT JOIN (SELECT parent_gen_id, avg(score) AS mean_score, count(*) AS n FROM scored
                              GROUP BY parent_gen_id) s ON s.parent_gen_id = e.doc_id
  WHERE e.stage = 'essay' AND e.status = 'ok' ORDER BY gen_id;
CREATE TABLE evaluation_scores_by_template_model AS SELECT evaluation_template, evaluation_llm_model,
  avg(score) AS mean, count(*) AS n, {_STD} AS std, max(scale) AS scale FROM scored GROUP BY 1, 2 ORDER BY 1, 2;
CREATE TABLE perfect_score_paths AS SELECT gen_id, evaluation_template, evaluation_llm_model, score, scale, combo_id,
  draft_doc_id, draft_template, draft_model, parent_gen_id AS essay_doc_id, generation_template, generation_model,
  origin_cohort_id, evaluation_response_path, generation_response_path
  FROM scored WHERE scale IS NOT NULL AND score = scale ORDER BY gen_id;
CREATE TABLE variance_analysis AS SELECT parent_gen_id AS generation_gen_id, evaluation_template,
  evaluation_llm_model, count(*) AS n, avg(score) AS mean, {_STD} AS std, min(score) AS min, max(score) AS max,
  max(score) - min(score) AS range FROM scored GROUP BY 1, 2, 3 ORDER BY 1, 2, 3;
CREATE TABLE usage_by_model AS SELECT model_id, stage, count(*) AS calls, sum(status = 'ok') AS ok,
  sum(status != 'ok') AS failed, sum(usage_prompt_tokens) AS prompt_tokens,
  sum(usage_completion_tokens) AS completion_tokens, CASE WHEN count(usage_cost) > 0 THEN sum(usage_cost) END AS cost
  FROM documents WHERE status != 'pending' GROUP BY 1, 2 ORDER BY 1, 2;
"""


_SAME_TABLES = ["evaluation_results", "aggregated_scores", "generation_results", "evaluation_scores_by_template_model",
                "perfect_score_paths", "variance_analysis", "usage_by_model", "final_results"]


def _sqlite_final_results(db: sqlite3.Connection) -> None:
    """The pivot: one column per evaluation template x model (SQL needs them spelled out)."""
    columns = [r[0] for r in db.execute("SELECT DISTINCT evaluation_template || '__' || evaluation_llm_model "
                                        "FROM scored ORDER BY 1")]
    means = "".join(f", avg(CASE WHEN s.evaluation_template || '__' || s.evaluation_llm_model = ? THEN s.score END) "
                    f"AS \"{c}\"" for c in columns)
    db.execute(f"CREATE TABLE final_results AS SELECT g.gen_id, g.combo_id, g.generation_template, g.generation_model, "
               f"g.origin_cohort_id, g.mean_score, g.n_evaluations{means} FROM generation_results g "
               f"LEFT JOIN scored s ON s.parent_gen_id = g.gen_id GROUP BY g.gen_id ORDER BY g.gen_id", columns)


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
        cols = _DOC_COLUMNS
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
            _sqlite_final_results(db)
            theirs.append(time.perf_counter() - t)
            for table in _SAME_TABLES:  # the peer did the same work: same tables, same row counts
                ours_rows = pl.read_parquet(root / "tables" / f"{table}.parquet").height
                peer_rows = db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
                assert ours_rows == peer_rows, f"{table}: {ours_rows} rows here, {peer_rows} in SQLite"
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
