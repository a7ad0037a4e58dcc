"""Search units: every searchable piece of text, one row per message block.

What the search index holds (``chronicle.search`` keeps it, in SQLite FTS5):
human prompts, assistant text, thinking, tool calls (name and input) and tool
results of every session and subagent; commit messages; LLM prompts,
responses and parsed texts. Each unit says where its text came from (session
or document, seq, block, time, role) and what the filters ask about (project,
agent, tool; stage, template, model, cohort).

Roles: ``user`` is only what a person typed (``isMeta`` records, compaction
summaries, harness notifications and a parent's prompt to a subagent are
``system``); ``tool`` is a call (its name and input) or a result; ``thinking``,
``assistant``; ``prompt``, ``response``, ``parsed`` for documents; ``commit``.

A tool result is named by its call, and a response or parse gets its prompt's
stage, template, model and cohort, when the index has them (the call or
prompt may come in a later batch of events than the result).
"""

from __future__ import annotations

import json

import polars as pl

from chronicle.projections._claude import parse
from chronicle.projections.conversations import conversation
from chronicle.projections._transcript import human_text, tool_input

INPUTS = ["session.line", "git.commit", "llm.prompt", "llm.response", "parse.result"]

#: A unit's text is cut here (a tool result may be a whole file); the log keeps all of it.
TEXT_LIMIT = 100_000
_TIME = pl.col("timestamp").str.to_datetime(time_zone="UTC", strict=False)

SCHEMA = {
    "seq": pl.Int64, "block": pl.Int64, "kind": pl.String, "role": pl.String, "time": pl.Datetime("us", "UTC"),
    "session_id": pl.String, "uuid": pl.String, "agent_id": pl.String, "project": pl.String, "tool": pl.String,
    "tool_use_id": pl.String, "tool_part": pl.String, "doc_id": pl.String, "stage": pl.String, "template": pl.String, "model": pl.String,
    "cohort": pl.String, "text": pl.String,
}


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


def _collect(inputs: dict[str, pl.LazyFrame], name: str, columns: list[str]) -> pl.DataFrame:
    return inputs[name].select(columns).collect()


def _document_frames(inputs: dict[str, pl.LazyFrame]) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    return (_collect(inputs, "llm.prompt", ["seq", "recorded_at", "doc_id", "stage", "template_id", "model_id",
                                           "cohort_id", "prompt"]),
            _collect(inputs, "llm.response", ["seq", "recorded_at", "doc_id", "text"]),
            _collect(inputs, "parse.result", ["seq", "recorded_at", "doc_id", "parsed"]))


def units(inputs: dict[str, pl.LazyFrame]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The units of the events in ``inputs`` (a frame of each of INPUTS), by seq and block, and the
    (session_id, uuid) of the transcript records among them: an earlier recording of each no longer counts."""
    records = conversation(inputs["session.line"])
    found = _session_units(records)
    found += _commit_units(_collect(inputs, "git.commit", ["seq", "repo", "sha", "committed_at", "message"]))
    found += _document_units(*_document_frames(inputs))
    return _frame(found), records.select("session_id", "uuid").unique()
