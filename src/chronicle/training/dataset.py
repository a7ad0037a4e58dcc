"""Episodes as a training set: (observation, action, reaction) rows, split, with a dataset card.

One row per episode, its three parts as nested columns, the labels people gave beside
what the classifiers said:

- ``observation``: the prompt, the messages before it, the files touched so far, the
  last test status, whether a compaction fell inside;
- ``action``: the tool calls (ids, classes, and each call's label where one was given),
  errors, the agent's text, the subagents it started;
- ``reaction``: the next human message, the classifier's label and confidence, and the
  label a person gave (with who).

The same checkpoint and options give the same bytes: rows in (session, index) order,
splits cut by rules over the rows themselves (a hash of the seed and the episode id
for ``random``), no wall-clock time anywhere, text masked (``Masker``) before it is
written. Projects chronicle.toml marks ``excluded`` are left out unless named.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime, timezone
from pathlib import Path

import msgspec
import polars as pl

from chronicle.errors import UsageError
from chronicle.training.labels import standing

FORMATS = ("parquet", "jsonl")
CARD = "README.md"


class Options(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """How an export was made: recorded in the card and in a release."""

    format: str = "parquet"
    split: str | None = None
    min_confidence: float | None = None
    labeled_only: bool = False
    projects: list[str] | None = None


def check(options: Options) -> None:
    if options.format not in FORMATS:
        raise UsageError(f"--format: {options.format!r} is not one of {', '.join(FORMATS)}")
    if options.min_confidence is not None and not 0 <= options.min_confidence <= 1:
        raise UsageError(f"--min-confidence: {options.min_confidence} is not between 0 and 1")
    _splitter(options.split)


def _splitter(spec: str | None):
    """``spec`` as a function of the rows giving each one's split name."""
    if spec is None:
        return lambda df: pl.lit("train")
    kind, _, rest = spec.partition(":")
    if kind == "time":
        try:
            cut = datetime.fromisoformat(rest)
        except ValueError:
            raise UsageError(f"--split time:DATE: {rest!r} is not a date or time (YYYY-MM-DD)") from None
        cut = cut if cut.tzinfo else cut.replace(tzinfo=timezone.utc)
        return lambda df: pl.when(pl.col("prompt_time") < cut).then(pl.lit("train")).otherwise(pl.lit("test"))
    if kind == "project" and not rest:
        return lambda df: pl.col("project_id").fill_null("unknown").str.replace_all(r"[^\w.]", "_")
    if kind == "random":
        fraction, _, seed = rest.partition(":")
        try:
            share = float(fraction)
        except ValueError:
            share = -1.0
        if not 0 < share < 1 or not seed:
            raise UsageError(f"--split random:FRACTION:SEED: {spec!r} needs a fraction between 0 and 1 "
                             "(the test share) and a seed")
        # a hash of the seed and the id: the same episode lands in the same split whatever else is exported
        def split(df: pl.DataFrame) -> pl.Series:
            draws = [int.from_bytes(hashlib.sha256(f"{seed}\0{e}".encode()).digest()[:8], "big") / 2**64
                     for e in df["episode_id"].to_list()]
            return pl.Series("split", ["test" if d < share else "train" for d in draws], dtype=pl.String)
        return split
    raise UsageError(f"--split: {spec!r} is not time:DATE, project or random:FRACTION:SEED")


def rows(tables: dict[str, pl.DataFrame], options: Options, masker) -> pl.DataFrame:
    """The export's rows (with a ``split`` column), masked, in (session, index) order."""
    projects = tables["projects"]
    eps = tables["episodes"].join(tables["session_projects"], on="session_id", how="left")
    if options.projects:
        named = projects.filter(pl.col("project_id").is_in(options.projects) | pl.col("name").is_in(options.projects))
        unknown = sorted(set(options.projects) - set(named["project_id"]) - set(named["name"]))
        if unknown:
            raise UsageError(f"--projects: no project {', '.join(map(repr, unknown))} "
                             f"(known: {', '.join(projects['project_id'].to_list()) or 'none'})")
        eps = eps.filter(pl.col("project_id").is_in(named["project_id"]))
    else:
        excluded = projects.filter(pl.col("status") == "excluded")["project_id"]
        eps = eps.filter(~pl.col("project_id").is_in(excluded).fill_null(False))
    labels = tables["labels"]
    reaction = standing(labels, "episode", "episode_id").rename(
        {"label": "reaction_label", "label_author": "reaction_label_author"})
    eps = eps.join(reaction, on="episode_id", how="left")
    by_call = dict(standing(labels, "action", "tool_use_id").select("tool_use_id", "label").iter_rows())
    eps = eps.with_columns(pl.Series("action_labels", [[by_call.get(i) for i in ids] for ids in eps["action_ids"]],
                                     dtype=pl.List(pl.String)))
    labelled = pl.col("reaction_label").is_not_null() | pl.col("action_labels").list.eval(
        pl.element().is_not_null()).list.any()
    if options.labeled_only:
        eps = eps.filter(labelled)
    if options.min_confidence is not None:
        eps = eps.filter(labelled | (pl.col("reaction_confidence") >= options.min_confidence))
    eps = eps.sort("session_id", "index")
    eps = eps.with_columns(_splitter(options.split)(eps).alias("split"))
    eps = masker.frame(eps)
    context = pl.col("context_json").str.json_decode(pl.List(pl.Struct({"role": pl.String, "text": pl.String})))
    return eps.select(
        "episode_id", "session_id", "project_id", "index", "prompt_time", "split",
        pl.struct(pl.col("prompt"), context.alias("context"), "files_touched", "last_test_status",
                  "compacted").alias("observation"),
        pl.struct("tool_calls", pl.col("action_ids").alias("tool_call_ids"), pl.col("actions").alias("classes"),
                  pl.col("action_labels").alias("class_labels"), "tool_errors", pl.col("action_text").alias("text"),
                  "subagents", pl.col("action_taxonomy").alias("taxonomy")).alias("action"),
        pl.struct(pl.col("reaction_text").alias("text"), pl.col("reaction").alias("predicted"),
                  pl.col("reaction_confidence").alias("confidence"), pl.col("reaction_label").alias("label"),
                  pl.col("reaction_label_author").alias("label_author"),
                  pl.col("reaction_taxonomy").alias("taxonomy")).alias("reaction"),
    )


def write(df: pl.DataFrame, out: Path, options: Options, seq: int, head_hash: str, title: str) -> list[Path]:
    """The split files under ``out/data/`` and the card ``out/README.md``; the paths written."""
    (out / "data").mkdir(parents=True, exist_ok=True)
    written = []
    splits = sorted(set(df["split"].to_list())) or ["train"]
    for split in splits:
        part = df.filter(pl.col("split") == split).drop("split")
        path = out / "data" / f"{split}.{options.format}"
        if options.format == "parquet":
            part.write_parquet(path, compression="zstd", statistics=False)
        else:
            path.write_bytes(part.write_ndjson().encode())
        written.append(path)
    card = out / CARD
    card.write_text(_card(df, options, seq, head_hash, title, splits), encoding="utf-8")
    return [*written, card]


def _card(df: pl.DataFrame, options: Options, seq: int, head_hash: str, title: str, splits: list[str]) -> str:
    counts = {s: df.filter(pl.col("split") == s) for s in splits}
    front = ["---", "configs:", "- config_name: default", "  data_files:"]
    for s in splits:
        front += [f"  - split: {s}", f"    path: data/{s}.{options.format}"]
    front.append("---")
    taxonomies = sorted(set(df["action"].struct.field("taxonomy").drop_nulls().to_list())
                        | set(df["reaction"].struct.field("taxonomy").drop_nulls().to_list()))
    lines = [*front, "", f"# {title}", "",
             "Coding-agent episodes as (observation, action, reaction) rows, exported by chronicle "
             "from its event log. Text is masked: a secret reads `[secret:RULE]`.", "",
             "## Source", "", f"- log checkpoint: seq {seq}, head hash `{head_hash}`",
             f"- options: `{json.dumps(msgspec.to_builtins(options), sort_keys=True)}`",
             f"- taxonomies: {', '.join(taxonomies) or 'none'}", "",
             "## Splits", "", "| split | episodes | reaction labelled | projects |", "|---|---|---|---|"]
    for s, part in counts.items():
        labelled = part["reaction"].struct.field("label").is_not_null().sum()
        lines.append(f"| {s} | {part.height} | {labelled} | {part['project_id'].n_unique()} |")
    lines += ["", "## Schema", "", "| column | type |", "|---|---|"]
    for name, dtype in df.drop("split").schema.items():
        lines.append(f"| `{name}` | `{_type(dtype)}` |")
    lines += ["", "Labels sit beside the classifiers' output: `reaction.label` beside `reaction.predicted`, "
              "`action.class_labels` beside `action.classes` (null where nobody labelled).", ""]
    return "\n".join(lines)


def _type(dtype: pl.DataType) -> str:
    return re.sub(r"\s+", " ", str(dtype)).replace("|", "\\|")
