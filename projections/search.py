"""search_units: every searchable piece of text, one row per message block.

What ``chronicle search`` indexes (see ``chronicle.search``): human prompts,
assistant text, thinking, tool calls (name and input) and tool results of every
session and subagent; commit messages; LLM prompts, responses and parsed texts.
Each row says where its text came from (session or document, seq, time, role)
and what the filters ask about (project, agent, tool; stage, template, model,
cohort).

Roles: ``user`` is only what a person typed (``isMeta`` records, compaction
summaries, harness notifications and a parent's prompt to a subagent are
``system``); ``tool`` is a call (its name and input) or a result; ``thinking``,
``assistant``; ``prompt``, ``response``, ``parsed`` for documents; ``commit``.

Incremental: new lines add their units and replace the units of an earlier
recording of the same (session, uuid), as ``current_lines`` counts it; a
rewritten transcript means a full build.
"""

from __future__ import annotations

import json

import polars as pl

from chronicle.projection import NeedsRebuild
from chronicle.projections._claude import current_lines, parse
from chronicle.projections._transcript import human_text, tool_input

INPUTS = ["session.line", "git.commit", "llm.prompt", "llm.response", "parse.result"]
OUTPUTS = ["search_units"]
NO_CSV = ["search_units"]

#: A unit's text is cut here (a tool result may be a whole file); the log keeps all of it.
TEXT_LIMIT = 100_000
_TIME = pl.col("timestamp").str.to_datetime(time_zone="UTC", strict=False)

SCHEMA = {
    "seq": pl.Int64, "block": pl.Int64, "kind": pl.String, "role": pl.String, "time": pl.Datetime("us", "UTC"),
    "session_id": pl.String, "uuid": pl.String, "agent_id": pl.String, "project": pl.String, "tool": pl.String,
    "tool_use_id": pl.String, "tool_part": pl.String, "doc_id": pl.String, "stage": pl.String, "template": pl.String, "model": pl.String,
    "cohort": pl.String, "text": pl.String,
}


def _records(lines: pl.LazyFrame) -> pl.DataFrame:
    return (current_lines(lines)
            .filter(pl.col("error").is_null() & pl.col("record_type").is_in(["user", "assistant"]))
            .sort("seq")
            .select("seq", "session_id", "uuid", "record_type", _TIME.alias("time"), "is_meta", "is_compact_summary",
                    "is_sidechain", "agent_id", "cwd", "raw")
            .collect())


def _result_text(raw: bytes) -> str:
    """A tool result's content: a string, or the text of a list of parts."""
    try:
        value = json.loads(raw) if raw else ""
    except ValueError:
        return raw.decode("utf-8", "replace")
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "\n".join(p["text"] for p in value if isinstance(p, dict) and isinstance(p.get("text"), str))
    return json.dumps(value, ensure_ascii=False)


def _session_units(records: pl.DataFrame) -> list[dict]:
    """Units of transcript records (a tool result's tool is named later, by :func:`_named`)."""
    units: list[dict] = []
    for row in records.iter_rows(named=True):
        rec = parse(row["raw"])
        content = rec.message.content if rec is not None and rec.message is not None else None
        base = {"seq": row["seq"], "kind": "session", "time": row["time"], "session_id": row["session_id"],
                "uuid": row["uuid"], "agent_id": row["agent_id"], "project": row["cwd"]}
        first = len(units)

        def add(role: str, text: str, **extra: object) -> None:
            if text and text.strip():
                units.append({**base, "block": len(units) - first, "role": role, "text": text[:TEXT_LIMIT], **extra})

        if isinstance(content, str):
            blocks_text, kinds = [content], ["text"]
        elif isinstance(content, list):
            blocks_text = [b.text for b in content if b.type == "text" and isinstance(b.text, str)]
            kinds = [b.type for b in content]
        else:
            continue
        if row["record_type"] == "user":
            if blocks_text:
                human = human_text(blocks_text, kinds, row)
                add("user" if human is not None else "system", "\n".join(blocks_text))
            for b in content if isinstance(content, list) else ():
                if b.type == "tool_result" and b.tool_use_id:
                    add("tool", _result_text(bytes(b.content)), tool_use_id=b.tool_use_id, tool_part="result")
            continue
        for b in content if isinstance(content, list) else ():
            if b.type == "text" and isinstance(b.text, str):
                add("assistant", b.text)
            elif b.type == "thinking" and isinstance(b.thinking, str):
                add("thinking", b.thinking)
            elif b.type == "tool_use" and b.id:
                name = b.name or ""
                add("tool", f"{name} {json.dumps(tool_input(b.input), ensure_ascii=False, sort_keys=True)}",
                    tool=name, tool_use_id=b.id, tool_part="call")
        if isinstance(content, str):
            add("assistant", content)
    return units


def _commit_units(commits: pl.DataFrame) -> list[dict]:
    return [{"seq": seq, "block": 0, "kind": "commit", "role": "commit", "time": when, "project": repo,
             "doc_id": sha, "text": message}
            for seq, repo, sha, when, message in commits.select("seq", "repo", "sha", "committed_at", "message").iter_rows()]


def _document_units(prompts: pl.DataFrame, responses: pl.DataFrame, parses: pl.DataFrame) -> list[dict]:
    """Units of documents (a response's stage, template, model and cohort are its prompt's: see :func:`_named`)."""
    units: list[dict] = []
    for row in prompts.iter_rows(named=True):
        if row["prompt"]:
            units.append({"seq": row["seq"], "block": 0, "kind": "document", "role": "prompt",
                          "time": row["recorded_at"], "doc_id": row["doc_id"], "text": row["prompt"][:TEXT_LIMIT],
                          "stage": row["stage"], "template": row["template_id"], "model": row["model_id"],
                          "cohort": row["cohort_id"]})
    for frame, role, column in ((responses, "response", "text"), (parses, "parsed", "parsed")):
        for seq, when, doc_id, text in frame.select("seq", "recorded_at", "doc_id", column).iter_rows():
            if text:
                units.append({"seq": seq, "block": 0, "kind": "document", "role": role, "time": when,
                              "doc_id": doc_id, "text": text[:TEXT_LIMIT]})
    return units


def _frame(units: list[dict]) -> pl.DataFrame:
    return pl.DataFrame(units, schema=SCHEMA).sort("seq", "block")


_DOC = ["stage", "template", "model", "cohort"]


def _named(units: pl.DataFrame) -> pl.DataFrame:
    """Each tool result named by its call (the first recorded), and each response and
    parse given its prompt's stage, template, model and cohort, wherever they are."""
    calls = (units.filter(pl.col("tool_part") == "call").sort("seq", "block")
             .unique("tool_use_id", keep="first", maintain_order=True)
             .select("tool_use_id", pl.col("tool").alias("_call")))
    prompts = (units.filter(pl.col("role") == "prompt").sort("seq").unique("doc_id", keep="first", maintain_order=True)
               .select("doc_id", *[pl.col(c).alias(f"_{c}") for c in _DOC]))
    answer = pl.col("role").is_in(["response", "parsed"])
    return (units.join(calls, on="tool_use_id", how="left", maintain_order="left")
            .join(prompts, on="doc_id", how="left", maintain_order="left")
            .with_columns(pl.when(pl.col("tool_part") == "result").then(pl.col("_call")).otherwise(pl.col("tool"))
                          .alias("tool"),
                          *[pl.when(answer).then(pl.col(f"_{c}")).otherwise(pl.col(c)).alias(c) for c in _DOC])
            .drop("_call", *[f"_{c}" for c in _DOC]))


def _collect(inputs: dict[str, pl.LazyFrame], name: str, columns: list[str]) -> pl.DataFrame:
    return inputs[name].select(columns).collect()


def _document_frames(inputs: dict[str, pl.LazyFrame]) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    return (_collect(inputs, "llm.prompt", ["seq", "recorded_at", "doc_id", "stage", "template_id", "model_id",
                                           "cohort_id", "prompt"]),
            _collect(inputs, "llm.response", ["seq", "recorded_at", "doc_id", "text"]),
            _collect(inputs, "parse.result", ["seq", "recorded_at", "doc_id", "parsed"]))


def build(inputs: dict[str, pl.LazyFrame]) -> dict[str, pl.DataFrame]:
    units = _session_units(_records(inputs["session.line"]))
    units += _commit_units(_collect(inputs, "git.commit", ["seq", "repo", "sha", "committed_at", "message"]))
    units += _document_units(*_document_frames(inputs))
    return {"search_units": _named(_frame(units))}


def update(previous: dict[str, pl.DataFrame], delta: dict[str, pl.LazyFrame]) -> dict[str, pl.DataFrame]:
    lines = delta["session.line"]
    if lines.filter((pl.col("generation") > 0) & (pl.col("offset") == 0)).select("path").head(1).collect().height:
        raise NeedsRebuild("a transcript was rewritten")
    old = previous["search_units"]
    records = _records(lines)
    if records["uuid"].null_count():
        raise NeedsRebuild("a record without a uuid")  # identified by its bytes: a full build dedupes it
    units = _session_units(records)
    units += _commit_units(_collect(delta, "git.commit", ["seq", "repo", "sha", "committed_at", "message"]))
    units += _document_units(*_document_frames(delta))
    if not units:
        return previous
    # a later recording of a (session, uuid) replaces the earlier one's units
    replaced = records.select("session_id", "uuid").unique()
    kept = old.join(replaced, on=["session_id", "uuid"], how="anti", nulls_equal=False)
    return {"search_units": _named(pl.concat([kept, _frame(units)]).sort("seq", "block"))}
