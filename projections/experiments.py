"""LLM experiment tables: documents, scores, pivots, usage and cohort membership.

``documents`` has one row per attempt (doc_id), with the column set of the
LLM-documents index design. The score tables read only the ok attempt of each
logical key and the latest ``parse.result`` of its doc (a re-parse recorded by
``chronicle audit reparse --record`` supersedes the run's own), and keep the
DayDreaming project's column names so its notebooks read them unchanged:

- ``evaluation_results``: one row per scored evaluation, with its essay and draft.
- ``aggregated_scores``: the source project's cross-experiment table (every cohort).
- ``generation_results``: one row per essay, with its mean score and evaluation count.
- ``evaluation_scores_by_template_model``: mean and n per evaluation template x model.
- ``final_results``: one row per essay, one column per ``{template}__{model}`` (mean score).
- ``perfect_score_paths``: evaluations at the top of the judge's own scale, with their path.
- ``variance_analysis``: spread of replicate scores per essay x evaluation template x model.
- ``usage_by_model``: calls, failures, tokens and reported cost per model and stage.
- ``cohort_membership``: every planned key of every cohort's latest plan, with its state.
"""

from __future__ import annotations

import polars as pl

from chronicle.projections._json_fields import readable

INPUTS = ["llm.prompt", "llm.response", "parse.result", "cohort.defined"]
OUTPUTS = ["documents", "evaluation_results", "aggregated_scores", "generation_results",
           "evaluation_scores_by_template_model", "final_results", "perfect_score_paths", "variance_analysis",
           "usage_by_model", "cohort_membership"]

#: Tables too large to be read as CSV (they are Parquet only; data/docs has the documents as files).
NO_CSV = ["documents"]

_MEMBER = pl.List(pl.Struct({
    "stage": pl.String, "logical_key_id": pl.String, "task_id": pl.String, "parent_key": pl.String,
    "combo_id": pl.String, "concept_ids": pl.List(pl.String), "level": pl.String, "template_id": pl.String,
    "model_id": pl.String, "replicate": pl.Int64, "parser": pl.String, "generator": pl.String}))


def _documents(prompts: pl.LazyFrame, responses: pl.LazyFrame, parses: pl.LazyFrame) -> pl.LazyFrame:
    p = prompts.select(
        "seq", "doc_id", "logical_key_id", "stage", "task_id", "parent_doc_id", "template_id", "model_id", "run_id",
        "cohort_id", pl.col("prompt_sha256").alias("prompt_hash"), "combo_id", "provider",
        pl.col("max_tokens").alias("usage_max_tokens"), pl.col("recorded_at").alias("prompted_at"))
    r = responses.select(
        "doc_id", "attempt", pl.col("status").alias("response_status"), "finish_reason", "latency_ms", "http_status",
        pl.col("text_sha256").alias("raw_sha256"), pl.col("text").str.len_chars().alias("raw_chars"),
        pl.col("prompt_tokens").alias("usage_prompt_tokens"),
        pl.col("completion_tokens").alias("usage_completion_tokens"), pl.col("cost").alias("usage_cost"),
        pl.col("supersedes_doc_id"),
        pl.col("recorded_at").alias("responded_at"))
    # the latest parse per doc: a filter on a window max is ~5x cheaper than group_by(...).last() over strings
    latest_parse = parses.filter(pl.col("seq") == pl.col("seq").max().over("doc_id")).select(
        "doc_id", "parser", pl.col("status").alias("parse_status"), "score", "scale",
        pl.col("reason").alias("parse_reason"), "parsed_sha256", pl.col("parsed").str.len_chars().alias("parsed_chars"))
    docs = (p.join(r, on="doc_id", how="left", maintain_order="left")
            .join(latest_parse, on="doc_id", how="left", maintain_order="left"))
    meta = pl.struct(
        pl.col("attempt"), pl.col("finish_reason"), pl.col("latency_ms"), pl.col("http_status"),
        pl.col("provider"), pl.col("cohort_id"),
        pl.col("parse_status"), pl.col("score"), pl.col("scale"),
    ).struct.json_encode()
    return docs.select(
        "doc_id", "logical_key_id", "stage", "task_id", "parent_doc_id", "template_id", "model_id", "run_id",
        "prompt_hash", "parser",
        pl.coalesce("response_status", pl.lit("pending")).alias("status"),
        "usage_prompt_tokens", "usage_completion_tokens", "usage_max_tokens",
        pl.coalesce("responded_at", "prompted_at").alias("created_at"),
        pl.concat_str(pl.lit("data/docs/"), "stage", pl.lit("/"), "doc_id").alias("doc_dir"),
        "raw_sha256", "parsed_sha256", "raw_chars", "parsed_chars",
        meta.alias("meta_small"),
        pl.col("supersedes_doc_id").alias("lineage_prev_doc_id"),
        # beyond the index design: what the score tables and people filter on
        "cohort_id", "combo_id", "attempt", "parse_status", "score", "scale", "parse_reason", "usage_cost",
        "latency_ms",
        # the order the prompts were recorded in: an update puts the documents it makes again back in it
        pl.col("seq").alias("prompt_seq"),
    )


def _evaluations(docs: pl.DataFrame) -> pl.DataFrame:
    # lazy, so each filter copies only the columns used below, not all of a wide table
    ok = docs.lazy().filter(pl.col("status") == "ok")
    ev = ok.filter(pl.col("stage") == "evaluation")
    essays = ok.filter(pl.col("stage") == "essay").select(
        pl.col("doc_id").alias("essay_doc_id"), pl.col("parent_doc_id").alias("draft_doc_id"),
        pl.col("template_id").alias("generation_template"), pl.col("model_id").alias("generation_model"),
        pl.col("task_id").alias("essay_task_id"), pl.col("doc_dir").alias("essay_dir"))
    drafts = ok.filter(pl.col("stage") == "draft").select(
        pl.col("doc_id").alias("draft_doc_id"), pl.col("template_id").alias("draft_template"),
        pl.col("model_id").alias("draft_model"), pl.col("task_id").alias("draft_task_id"))
    return (ev.join(essays, left_on="parent_doc_id", right_on="essay_doc_id", how="left")
            .join(drafts, on="draft_doc_id", how="left")
            .select(
                # gen_id as DayDreaming means it: the task's id (a legacy import's doc_id is one already);
                # doc_id names chronicle's attempt
                pl.coalesce("task_id", "doc_id").alias("gen_id"),
                pl.coalesce("essay_task_id", "parent_doc_id").alias("parent_gen_id"), "task_id", "doc_id",
                pl.col("parent_doc_id").alias("essay_doc_id"),
                "logical_key_id", pl.col("template_id").alias("evaluation_template"),
                pl.col("model_id").alias("evaluation_llm_model"), "score", "scale",
                pl.when(pl.col("parse_status") != "ok").then(pl.col("parse_reason")).alias("error"),
                (pl.col("doc_dir") + "/raw.txt").alias("evaluation_response_path"), "combo_id", "draft_template",
                "draft_model", "draft_doc_id", "generation_template", "generation_model",
                pl.col("cohort_id").alias("origin_cohort_id"), (pl.col("essay_dir") + "/raw.txt").alias(
                    "generation_response_path"),
                pl.when(pl.col("generation_model") == "copy").then(pl.lit("copy")).otherwise(pl.lit("llm"))
                .alias("input_mode"),
                pl.when(pl.col("generation_model") == "copy").then(pl.coalesce("draft_task_id", "draft_doc_id"))
                .alias("copied_from"),
                "parser", "created_at")
            .sort("origin_cohort_id", "gen_id", nulls_last=True).collect())


_AGGREGATED = ["gen_id", "parent_gen_id", "evaluation_template", "evaluation_llm_model", "score", "error",
               "evaluation_response_path", "combo_id", "draft_template", "generation_template", "generation_model",
               "origin_cohort_id", "generation_response_path", "input_mode", "copied_from"]


def _membership(cohorts: pl.LazyFrame, docs: pl.DataFrame) -> pl.DataFrame:
    latest = (cohorts.filter(readable("cohort.defined", "membership_json"))  # others are in ingest_errors
              .sort("seq").group_by("cohort_id").agg(pl.col("membership_json").last(), pl.col("seq").last()))
    rows = (latest.select("cohort_id", pl.col("seq").alias("plan_seq"),
                          pl.col("membership_json").str.json_decode(_MEMBER).alias("m"))
            .explode("m").unnest("m").collect())
    planned = docs.filter(pl.col("logical_key_id").is_in(rows["logical_key_id"].unique().to_list()))
    per_key = planned.group_by("logical_key_id").agg(
        pl.len().alias("attempts"), (pl.col("status") == "ok").any().alias("has_ok"),
        pl.col("doc_id").filter(pl.col("status") == "ok").first().alias("ok_doc_id"),
        pl.col("status").sort_by("attempt", nulls_last=True).last().alias("last_status"))
    return (rows.join(per_key, on="logical_key_id", how="left")
            .with_columns(pl.when(pl.col("has_ok")).then(pl.lit("done"))
                          .when(pl.col("last_status") == "pending").then(pl.lit("in_flight"))
                          .when(pl.col("attempts").is_not_null()).then(pl.lit("failed"))
                          .otherwise(pl.lit("to_do")).alias("state"),
                          pl.col("attempts").fill_null(0), pl.col("concept_ids").list.join(","))
            .drop("has_ok", "last_status")
            .sort("cohort_id", "stage", "logical_key_id"))


_DOC_INPUTS = ("llm.prompt", "llm.response", "parse.result")


def build(inputs: dict[str, pl.LazyFrame]) -> dict[str, pl.DataFrame]:
    # In the order the prompts were recorded: deterministic, and sorting 1M wide rows costs more than the rest.
    docs = _documents(*(inputs[t] for t in _DOC_INPUTS)).collect()
    return _tables(docs, inputs["cohort.defined"])


def update(previous: dict[str, pl.DataFrame], delta: dict[str, pl.LazyFrame],
           inputs: dict[str, pl.LazyFrame]) -> dict[str, pl.DataFrame]:
    """The documents new events touch (a prompt, its response, a parse recorded later by an
    audit) are made again from all their events; every other table is made from the documents."""
    touched = (pl.concat([delta[t].select("doc_id") for t in _DOC_INPUTS]).unique().collect()["doc_id"]
               .sort().to_list())
    docs = previous["documents"]
    if touched:
        mine = [inputs[t].filter(pl.col("doc_id").is_in(touched)) for t in _DOC_INPUTS]
        docs = (pl.concat([docs.filter(~pl.col("doc_id").is_in(touched)), _documents(*mine).collect()])
                .sort("prompt_seq"))
    return _tables(docs, inputs["cohort.defined"])


def _tables(docs: pl.DataFrame, cohorts: pl.LazyFrame) -> dict[str, pl.DataFrame]:
    ev = _evaluations(docs)
    scored = ev.filter(pl.col("score").is_not_null())
    by_gen = scored.group_by("parent_gen_id").agg(pl.col("score").mean().alias("mean_score"),
                                                  pl.len().alias("n_evaluations"))
    draft_ids = docs.filter(pl.col("stage") == "draft").select(
        pl.col("doc_id").alias("parent_doc_id"), pl.coalesce("task_id", "doc_id").alias("parent_gen_id"))
    generation = (docs.filter((pl.col("stage") == "essay") & (pl.col("status") == "ok"))
                  .join(draft_ids, on="parent_doc_id", how="left")
                  .select(pl.coalesce("task_id", "doc_id").alias("gen_id"),
                          pl.coalesce("parent_gen_id", "parent_doc_id").alias("parent_gen_id"), "task_id", "doc_id",
                          "combo_id", pl.col("template_id").alias("generation_template"),
                          pl.col("model_id").alias("generation_model"), pl.col("cohort_id").alias("origin_cohort_id"),
                          "parsed_chars", "parse_status")
                  .join(by_gen.rename({"parent_gen_id": "gen_id"}), on="gen_id", how="left")
                  .with_columns(pl.col("n_evaluations").fill_null(0)).sort("gen_id"))
    by_template_model = (scored.group_by("evaluation_template", "evaluation_llm_model")
                         .agg(pl.col("score").mean().alias("mean"), pl.len().alias("n"),
                              pl.col("score").std().alias("std"), pl.col("scale").max().alias("scale"))
                         .sort("evaluation_template", "evaluation_llm_model"))
    pivot_key = pl.concat_str("evaluation_template", pl.lit("__"), "evaluation_llm_model").alias("column")
    long = scored.group_by("parent_gen_id", pivot_key).agg(pl.col("score").mean())
    final = generation.select("gen_id", "combo_id", "generation_template", "generation_model", "origin_cohort_id",
                              "mean_score", "n_evaluations")
    if long.height:
        wide = long.pivot(on="column", index="parent_gen_id", values="score", sort_columns=True)
        final = final.join(wide.rename({"parent_gen_id": "gen_id"}), on="gen_id", how="left")
    perfect = (scored.filter(pl.col("scale").is_not_null() & (pl.col("score") == pl.col("scale")))
               .select("gen_id", "evaluation_template", "evaluation_llm_model", "score", "scale", "combo_id",
                       "draft_doc_id", "draft_template", "draft_model", "essay_doc_id",
                       "generation_template", "generation_model", "origin_cohort_id",
                       "evaluation_response_path", "generation_response_path").sort("gen_id"))
    variance = (scored.group_by("parent_gen_id", "evaluation_template", "evaluation_llm_model")
                .agg(pl.len().alias("n"), pl.col("score").mean().alias("mean"), pl.col("score").std().alias("std"),
                     pl.col("score").min().alias("min"), pl.col("score").max().alias("max"))
                .with_columns((pl.col("max") - pl.col("min")).alias("range"))
                .rename({"parent_gen_id": "generation_gen_id"})
                .sort("generation_gen_id", "evaluation_template", "evaluation_llm_model"))
    usage = (docs.filter(pl.col("status") != "pending")
             .group_by("model_id", "stage")
             .agg(pl.len().alias("calls"), (pl.col("status") == "ok").sum().alias("ok"),
                  (pl.col("status") != "ok").sum().alias("failed"),
                  pl.col("usage_prompt_tokens").sum().alias("prompt_tokens"),
                  pl.col("usage_completion_tokens").sum().alias("completion_tokens"),
                  # null when no call reported a cost: unknown is not $0
                  pl.when(pl.col("usage_cost").is_not_null().any()).then(pl.col("usage_cost").sum()).alias("cost"),
                  pl.col("latency_ms").median().alias("latency_ms_p50"))
             .sort("model_id", "stage"))
    return {
        "documents": docs,
        "evaluation_results": ev,
        "aggregated_scores": ev.select(_AGGREGATED),
        "generation_results": generation,
        "evaluation_scores_by_template_model": by_template_model,
        "final_results": final,
        "perfect_score_paths": perfect,
        "variance_analysis": variance,
        "usage_by_model": usage,
        "cohort_membership": _membership(cohorts, docs),
    }
