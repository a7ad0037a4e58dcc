"""episodes: turn-level units for studying agent behaviour.

One episode per human message that directs the agent, in the main thread of a
session:

- **observation**: what the agent could see when the message arrived: the
  last few messages before it, the files its tools had touched so far in the
  session, and the last known test status (the outcome of the latest tool call
  the action taxonomy calls ``test``);
- **action**: the agent's tool calls and text until the next human message,
  each tool call classified by the action taxonomy (``actions``, beside the
  calls' ids in ``action_ids``: an action label names one);
- **reaction**: the next human message, classified by the reaction taxonomy
  with a confidence (``none`` when the session ended).

Human messages are user records with typed text: not tool results, not
``isMeta`` or compact summaries, not harness notifications (see
``_transcript.human_text``). Compaction: an episode may span a
``compact_boundary``; it is flagged ``compacted`` and its observation context
starts after the boundary, as the agent's did. Subagents: a delegation is one
tool call of class ``delegate`` in the parent's action (with the subagent's
id); the subagent's own records, in its sidechain, are not episodes.
Taxonomies are versioned JSON files in ``data/taxonomies``; each episode
records the versions it was classified with. Episode ids are a hash of the
session id and the prompt's uuid.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import re
from pathlib import Path

import polars as pl

from chronicle.projection import NeedsRebuild
from chronicle.projections._claude import (
    current_lines,
    lines_of_sessions,
    rewritten,
    session_batches,
    touched_sessions,
)
from chronicle.shipped import TAXONOMIES
from chronicle.projections.conversations import conversation, messages_and_tools

INPUTS = ["session.line"]
OUTPUTS = ["episodes"]

#: What `chronicle show episodes` prints for people (every column with --columns all, --json or --csv).
VIEW = {"episodes": ["episode_id", "session_id", "index", "prompt_time", "prompt", "tool_calls", "reaction",
                     "reaction_confidence"]}
DATA_FILES = [TAXONOMIES / "action.v1.json", TAXONOMIES / "reaction.v1.json"]
CONTEXT_MESSAGES = 4
CONTEXT_CHARS = 300


def _load(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"taxonomy {path} is missing (it ships as package data: chronicle.data)") from None


ACTION = _load(DATA_FILES[0])
REACTION = _load(DATA_FILES[1])
#: The taxonomies' names and versions, as an episode and a label record them.
ACTION_TAXONOMY = f"{ACTION['name']}.v{ACTION['version']}"
REACTION_TAXONOMY = f"{REACTION['name']}.v{REACTION['version']}"
_ACTION_RULES = [(r["class"], set(r["tools"]), [re.compile(p) for p in r.get("command_patterns", [])])
                 for r in ACTION["rules"]]
# A class's patterns as one alternation: one search per class and reaction, not one per pattern.
_REACTIONS = [(c["label"], c["confidence"], re.compile("|".join(f"(?:{p})" for p in c["patterns"]), re.I))
              for c in REACTION["classes"]]


def action_class(tool: str, command: str | None) -> str:
    for name, tools, patterns in _ACTION_RULES:
        if tool in tools and (not patterns or (command is not None and any(p.search(command) for p in patterns))):
            return name
    return ACTION["default"]


def reaction(text: str | None) -> tuple[str, float]:
    if text is None:
        return "none", 1.0
    t = text.strip()
    hits = [(label, conf) for label, conf, pattern in _REACTIONS if pattern.search(t)]
    if not hits:
        return REACTION["default"]["label"], REACTION["default"]["confidence"]
    label, conf = hits[0]
    return label, round(conf * REACTION["ambiguity_factor"] ** (len(hits) - 1), 3)


_SCHEMA = {
    "episode_id": pl.String, "session_id": pl.String, "index": pl.Int64, "prompt_uuid": pl.String,
    "prompt_time": pl.Datetime("us", "UTC"), "prompt": pl.String, "context_json": pl.String,
    "files_touched": pl.List(pl.String), "last_test_status": pl.String, "compacted": pl.Boolean,
    "tool_calls": pl.Int64, "actions": pl.List(pl.String), "action_ids": pl.List(pl.String), "action_counts_json": pl.String,
    "tool_errors": pl.Int64, "assistant_text_length": pl.Int64, "action_text": pl.String,
    "subagents": pl.List(pl.String), "reaction_uuid": pl.String, "reaction_text": pl.String,
    "reaction": pl.String, "reaction_confidence": pl.Float64,
    "action_taxonomy": pl.String, "reaction_taxonomy": pl.String,
}


def build(inputs: dict[str, pl.LazyFrame]) -> dict[str, pl.DataFrame]:
    """Batch by batch of sessions (memory follows a batch, not the log); all at once when a tool
    call id repeats across batches (the first recording of a call counts, across sessions)."""
    lines = inputs["session.line"]
    batches = session_batches(lines)
    if len(batches) > 1:
        parts, seen = [], set()
        for batch in batches:
            mine = lines_of_sessions(lines, batch)
            messages, tools = messages_and_tools(conversation(mine))
            ids = set(tools["tool_use_id"].to_list())
            if ids & seen:
                break
            seen |= ids
            parts.append(_episodes_of(mine, messages, tools))
        else:
            return {"episodes": pl.concat(parts).sort("session_id", "index")}
    return {"episodes": _episodes(lines)}


def update(previous: dict[str, pl.DataFrame], delta: dict[str, pl.LazyFrame],
           inputs: dict[str, pl.LazyFrame]) -> dict[str, pl.DataFrame]:
    """Episodes are made per session: the sessions new lines touch are made again from all their lines."""
    lines = delta["session.line"]
    if rewritten(lines):
        raise NeedsRebuild("a transcript was rewritten")
    touched = touched_sessions(lines)
    if not touched:
        return previous
    fresh = _episodes(lines_of_sessions(inputs["session.line"], touched).collect().lazy())  # read once
    kept = previous["episodes"].filter(~pl.col("session_id").is_in(touched))
    return {"episodes": pl.concat([kept, fresh]).sort("session_id", "index")}


def _episodes(lines: pl.LazyFrame) -> pl.DataFrame:
    return _episodes_of(lines, *messages_and_tools(conversation(lines)))


def _episodes_of(lines: pl.LazyFrame, messages: pl.DataFrame, tools: pl.DataFrame) -> pl.DataFrame:
    boundaries = (current_lines(lines).filter((pl.col("subtype") == "compact_boundary") & pl.col("error").is_null())
                  .select("session_id", "seq").collect())
    bounds: dict[str, list[int]] = {}
    for sid, seq in boundaries.iter_rows():
        bounds.setdefault(sid, []).append(seq)
    main = messages.filter(~pl.col("is_sidechain") & pl.col("session_id").is_not_null()).sort("seq")
    calls = tools.filter(pl.col("agent_id").is_null()).sort("call_seq")
    calls_by_session: dict[str, list[dict]] = {}
    for c in calls.iter_rows(named=True):
        calls_by_session.setdefault(c["session_id"], []).append(c)
    rows = []
    for (sid,), msgs in main.group_by("session_id", maintain_order=True):
        msgs_l = msgs.to_dicts()
        humans = [i for i, m in enumerate(msgs_l) if m["is_human"]]
        # Linear in the session's length: its calls and boundaries are in seq order, and each
        # episode starts later than the one before, so what came before it is kept as it grows.
        session_calls = calls_by_session.get(sid, [])
        call_seqs = [c["call_seq"] for c in session_calls]
        call_classes = [action_class(c["tool_name"], c["command"]) for c in session_calls]
        session_bounds = sorted(bounds.get(sid, []))
        files_before: set[str] = set()
        last_test: dict | None = None
        seen = 0  # calls before the current prompt
        for n, hi in enumerate(humans):
            prompt = msgs_l[hi]
            end = humans[n + 1] if n + 1 < len(humans) else len(msgs_l)
            start_seq = prompt["seq"]
            end_seq = msgs_l[end]["seq"] if end < len(msgs_l) else None
            while seen < len(session_calls) and call_seqs[seen] < start_seq:
                if session_calls[seen]["file_path"]:
                    files_before.add(session_calls[seen]["file_path"])
                if call_classes[seen] == "test":
                    last_test = session_calls[seen]
                seen += 1
            first = bisect.bisect_right(call_seqs, start_seq)
            stop = len(call_seqs) if end_seq is None else bisect.bisect_left(call_seqs, end_seq)
            during, classes = session_calls[first:stop], call_classes[first:stop]
            b = bisect.bisect_left(session_bounds, start_seq)
            last_boundary = session_bounds[b - 1] if b else 0
            context = []
            for j in range(hi - 1, -1, -1):  # back from the prompt, not a copy of all before it
                m = msgs_l[j]
                if m["seq"] <= last_boundary or len(context) == CONTEXT_MESSAGES:
                    break
                if m["text"]:
                    context.append({"role": m["role"], "text": m["text"][:CONTEXT_CHARS]})
            context.reverse()
            status = None if last_test is None else ("failed" if last_test["is_error"] else "passed")
            counts: dict[str, int] = {}
            for cl in classes:
                counts[cl] = counts.get(cl, 0) + 1
            answer = [m for m in msgs_l[hi + 1 : end] if m["role"] == "assistant"]
            nxt = msgs_l[end] if end < len(msgs_l) else None
            label, conf = reaction(nxt["text"] if nxt else None)
            after = bisect.bisect_right(session_bounds, start_seq)
            compacted = after < len(session_bounds) and (end_seq is None or session_bounds[after] < end_seq)
            rows.append({
                "episode_id": "ep-" + hashlib.sha256(f"{sid}\0{prompt['uuid']}".encode()).hexdigest()[:20],
                "session_id": sid, "index": n, "prompt_uuid": prompt["uuid"], "prompt_time": prompt["time"],
                "prompt": prompt["text"], "context_json": json.dumps(context, ensure_ascii=False),
                "files_touched": sorted(files_before),
                "last_test_status": status, "compacted": compacted,
                "tool_calls": len(during), "actions": classes, "action_ids": [c["tool_use_id"] for c in during],
                "action_counts_json": json.dumps(counts, sort_keys=True),
                "tool_errors": sum(1 for c in during if c["is_error"]),
                "assistant_text_length": sum(m["text_length"] for m in answer),
                "action_text": "\n".join(m["text"] for m in answer if m["text"])[:CONTEXT_CHARS * 2] or None,
                "subagents": [c["spawned_agent_id"] for c in during if c["spawned_agent_id"]],
                "reaction_uuid": nxt["uuid"] if nxt else None, "reaction_text": nxt["text"] if nxt else None,
                "reaction": label, "reaction_confidence": conf,
                "action_taxonomy": ACTION_TAXONOMY, "reaction_taxonomy": REACTION_TAXONOMY,
            })
    return pl.DataFrame(rows, schema=_SCHEMA).sort("session_id", "index")
