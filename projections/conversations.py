"""sessions, messages, tool_calls, subagents, commits, session_commits, projects,
session_projects: what happened in Claude Code sessions, the git commits they
made, and the projects both belong to (see ``_projects``).

Read from each file's latest generation. A resumed session repeats earlier
records with the same ``uuid`` in a new file; each (session, uuid) counts once
(its latest recording, see ``current_lines``). Lines that could not be read are left out here (they are in
``ingest_errors``). Subagent records carry their parent's ``sessionId`` with
``isSidechain``; they are counted in their parent session and linked to the
tool call that spawned them through ``toolUseResult.agentId``.
"""

from __future__ import annotations

import polars as pl

from chronicle.projection import NeedsRebuild
from chronicle.projections._claude import (
    current_lines,
    latest_generation,
    lines_of_sessions,
    parse,
    rewritten,
    session_batches,
    sessionless_lines,
    touched_sessions,
)
from chronicle.projections import _projects
from chronicle.projections._commits import commits_table, links, printed_hash
from chronicle.projections._transcript import human_text, input_summary, tool_input

INPUTS = ["session.line", "session.meta", "git.commit", "projects.configured"]
OUTPUTS = ["sessions", "messages", "tool_calls", "subagents", "commits", "session_commits", "projects",
           "session_projects"]
#: messages holds the transcripts' text (100 MB of CSV for 700 MB of transcripts, rewritten on every update):
#: Parquet only, read with `chronicle show messages --csv` when wanted.
NO_CSV = ["messages"]
#: What `chronicle show` prints for people (every column with --columns all, --json or --csv).
VIEW = {
    "sessions": ["session_id", "title", "project", "first_time", "duration_s", "human_messages", "models",
                 "usage_by_session.total_tokens", "usage_by_session.cost_usd"],
    "messages": ["seq", "session_id", "time", "role", "is_human", "text"],
    "tool_calls": ["session_id", "called_at", "tool_name", "input_summary", "is_error"],
    "projects": ["project_id", "name", "tier", "status", "sessions", "commits", "linked_commits", "first_activity",
                 "last_activity"],
}

#: Message text kept in the table (the full text stays in the log).
TEXT_LIMIT = 2000
_TIME = pl.col("timestamp").str.to_datetime(time_zone="UTC", strict=False)


def _readable(lines: pl.LazyFrame) -> pl.LazyFrame:
    return current_lines(lines).filter(pl.col("error").is_null() & pl.col("record_type").is_not_null())


def conversation(lines: pl.LazyFrame) -> pl.DataFrame:
    """User and assistant records, each once (see ``current_lines``), in log order."""
    return (
        _readable(lines)
        .filter(pl.col("record_type").is_in(["user", "assistant"]))
        .sort("seq")
        .select("seq", "path", "line_no", "session_id", "uuid", "parent_uuid", "record_type", _TIME.alias("time"),
                "is_meta", "is_compact_summary", "is_sidechain", "agent_id", "result_agent_id", "message_id", "model",
                "cwd", "raw")
        .collect()
    )


def messages_and_tools(convo: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    msg_rows, uses, results = [], [], []
    for row in convo.iter_rows(named=True):
        rec = parse(row["raw"])
        content = rec.message.content if rec is not None and rec.message is not None else None
        kinds: list[str] = []
        text_len = 0
        texts: list[str] = []
        if isinstance(content, str):
            kinds, text_len, texts = ["text"], len(content), [content]
        elif isinstance(content, list):
            for b in content:
                if b.type not in kinds:
                    kinds.append(b.type)
                if b.type == "text" and isinstance(b.text, str):
                    text_len += len(b.text)
                    texts.append(b.text)
                elif b.type == "thinking" and isinstance(b.thinking, str):
                    text_len += len(b.thinking)
                elif b.type == "tool_use" and b.id:
                    name = b.name or ""
                    inp = tool_input(b.input)
                    uses.append({"tool_use_id": b.id, "tool_name": name, "input_summary": input_summary(name, inp),
                                 "command": inp.get("command") if isinstance(inp.get("command"), str) else None,
                                 "file_path": next((inp[k] for k in ("file_path", "notebook_path", "path")
                                                    if isinstance(inp.get(k), str)), None),
                                 "subagent_type": inp.get("subagent_type") if isinstance(inp.get("subagent_type"), str) else None,
                                 "description": inp.get("description") if isinstance(inp.get("description"), str) else None,
                                 "session_id": row["session_id"], "agent_id": row["agent_id"],
                                 "called_at": row["time"], "call_seq": row["seq"], "message_uuid": row["uuid"]})
                elif b.type == "tool_result" and b.tool_use_id:
                    results.append({"tool_use_id": b.tool_use_id, "is_error": b.is_error is True,
                                    "result_bytes": len(b.content), "result_at": row["time"],
                                    "result_commit": printed_hash(bytes(b.content)) if len(b.content) else None,
                                    "spawned_agent_id": row["result_agent_id"], "result_seq": row["seq"]})
        role = row["record_type"]
        msg_rows.append({
            "seq": row["seq"], "session_id": row["session_id"], "uuid": row["uuid"], "parent_uuid": row["parent_uuid"],
            "time": row["time"], "role": role, "content_kinds": kinds, "text_length": text_len,
            "is_meta": bool(row["is_meta"]), "is_compact_summary": bool(row["is_compact_summary"]),
            "is_sidechain": bool(row["is_sidechain"]), "agent_id": row["agent_id"],
            "is_human": role == "user" and human_text(texts, kinds, row) is not None,
            "text": "\n".join(texts)[:TEXT_LIMIT] if texts else None,
            "message_id": row["message_id"], "model": row["model"], "path": row["path"], "line_no": row["line_no"],
        })
    messages = pl.DataFrame(msg_rows, schema=_MESSAGE_SCHEMA)
    use_df = pl.DataFrame(uses, schema=_USE_SCHEMA).unique("tool_use_id", keep="first", maintain_order=True)
    res_df = pl.DataFrame(results, schema=_RESULT_SCHEMA).unique("tool_use_id", keep="first", maintain_order=True)
    tools = use_df.join(res_df, on="tool_use_id", how="left").sort("call_seq", "tool_use_id")
    return messages, tools


_MESSAGE_SCHEMA = {
    "seq": pl.Int64, "session_id": pl.String, "uuid": pl.String, "parent_uuid": pl.String,
    "time": pl.Datetime("us", "UTC"), "role": pl.String, "content_kinds": pl.List(pl.String), "text_length": pl.Int64,
    "is_meta": pl.Boolean, "is_compact_summary": pl.Boolean, "is_sidechain": pl.Boolean, "agent_id": pl.String,
    "is_human": pl.Boolean, "text": pl.String, "message_id": pl.String, "model": pl.String, "path": pl.String, "line_no": pl.Int64,
}
_USE_SCHEMA = {
    "tool_use_id": pl.String, "tool_name": pl.String, "input_summary": pl.String, "command": pl.String,
    "file_path": pl.String, "subagent_type": pl.String, "description": pl.String, "session_id": pl.String,
    "agent_id": pl.String, "called_at": pl.Datetime("us", "UTC"), "call_seq": pl.Int64, "message_uuid": pl.String,
}
_RESULT_SCHEMA = {
    "tool_use_id": pl.String, "is_error": pl.Boolean, "result_bytes": pl.Int64,
    "result_at": pl.Datetime("us", "UTC"), "result_commit": pl.String, "spawned_agent_id": pl.String,
    "result_seq": pl.Int64,
}


def subagents(own: pl.DataFrame, metas: pl.LazyFrame, tools: pl.DataFrame) -> pl.DataFrame:
    """Subagents (``own``: see _own_agents) with their type (meta.json) and the call that spawned them."""
    meta = (
        metas.filter(pl.col("kind") == "agent-meta")
        .sort("seq").group_by("path").last()
        .select(pl.col("path").str.extract(r"agent-([^/]+)\.meta\.json$").alias("agent_id"),
                pl.col("raw").cast(pl.String).str.json_path_match("$.agentType").alias("meta_agent_type"))
        .collect()
    )
    spawns = (tools.filter(pl.col("spawned_agent_id").is_not_null())
              .select(pl.col("spawned_agent_id").alias("agent_id"), pl.col("tool_use_id").alias("parent_tool_use_id"),
                      "subagent_type", "description")
              .unique("agent_id", keep="first", maintain_order=True))
    return (
        own.join(spawns, on="agent_id", how="left").join(meta, on="agent_id", how="left")
        .select("agent_id", "parent_session_id", "parent_tool_use_id",
                pl.coalesce("meta_agent_type", "subagent_type").alias("agent_type"), "description",
                "first_time", "last_time", "records", "path")
        .sort("agent_id")
    )


def titles(lines: pl.LazyFrame) -> pl.DataFrame:
    """for_session, title: a `summary` record (often in a later file, of another session)
    names the session of its leafUuid; an `ai-title` its own. Read from all lines
    cheaply: only the summary and title records' bytes are read."""
    latest = latest_generation(lines).filter(pl.col("error").is_null() & pl.col("record_type").is_not_null())
    owners = (latest.filter(pl.col("uuid").is_not_null()).sort("seq")
              .unique(["session_id", "uuid"], keep="last", maintain_order=True)
              .select("uuid", pl.col("session_id").alias("owner")))
    named = current_lines(latest.filter(pl.col("record_type").is_in(["summary", "ai-title"])))
    return (
        named.with_columns(pl.col("raw").cast(pl.String).alias("_text"))
        .with_columns(pl.coalesce(pl.col("_text").str.json_path_match("$.summary"),
                                  pl.col("_text").str.json_path_match("$.title")).alias("title"))
        .join(owners, left_on="leaf_uuid", right_on="uuid", how="left")
        .with_columns(pl.coalesce("owner", "session_id").alias("for_session"),
                      (pl.col("record_type") == "summary").alias("_from_summary"))
        .filter(pl.col("for_session").is_not_null() & pl.col("title").is_not_null())
        .sort("_from_summary", "seq")
        .group_by("for_session").agg(pl.col("title").last())
        .collect()
    )


def sessions(lines: pl.LazyFrame, messages: pl.DataFrame) -> pl.DataFrame:
    return _titled(session_rows(lines, messages), lines)


def _titled(rows: pl.DataFrame, lines: pl.LazyFrame, known: pl.DataFrame | None = None) -> pl.DataFrame:
    """Session rows (see session_rows) with their titles, in table order: read from all
    ``lines``, or taken from ``known`` (for_session, title) when an update found they stand."""
    first_line = pl.col("first_prompt").str.strip_chars().str.split("\n").list.first().str.slice(0, 80)
    return (rows.join(titles(lines) if known is None else known, left_on="session_id", right_on="for_session",
                      how="left")
            # else the first thing the human said (which can move: a record counts at its latest recording)
            .with_columns(pl.col("title").is_null().alias("title_from_prompt"))
            .with_columns(pl.coalesce("title", first_line).alias("title"),
                          (pl.col("title_from_prompt") & first_line.is_not_null()).alias("title_from_prompt"))
            .select(_SESSION_COLUMNS).sort("first_time", "session_id", nulls_last=True))


def titles_stand(new: pl.LazyFrame, lines: pl.LazyFrame) -> bool:
    """Whether new lines leave every title as it was: they hold no title record, and
    none of their records is one a summary's leafUuid names (a new owner for it)."""
    named = new.filter(pl.col("record_type").is_in(["summary", "ai-title"])).head(1).collect()
    if named.height:
        return False
    leaves = lines.filter(pl.col("record_type") == "summary").select("leaf_uuid").drop_nulls()
    return not new.select("uuid").drop_nulls().join(leaves, left_on="uuid", right_on="leaf_uuid",
                                                    how="semi").head(1).collect().height


def session_rows(lines: pl.LazyFrame, messages: pl.DataFrame) -> pl.DataFrame:
    """A row per session of these lines, all but its title (a summary in another session may name it)."""
    readable = _readable(lines).with_columns(_TIME.alias("time"))
    base = (
        readable.filter(pl.col("session_id").is_not_null())
        .group_by("session_id")
        .agg(
            pl.col("cwd").sort_by("seq").drop_nulls().first().alias("project"),
            pl.col("slug").sort_by("seq").drop_nulls().last().alias("slug"),
            pl.col("time").min().alias("first_time"), pl.col("time").max().alias("last_time"),
            pl.len().cast(pl.Int64).alias("records"),
            (pl.col("record_type") == "user").sum().cast(pl.Int64).alias("user_records"),
            (pl.col("record_type") == "assistant").sum().cast(pl.Int64).alias("assistant_records"),
            (pl.col("record_type") == "system").sum().cast(pl.Int64).alias("system_records"),
            pl.col("model").filter(pl.col("model") != "<synthetic>").drop_nulls().unique().sort().alias("models"),
            pl.col("git_branch").drop_nulls().unique().sort().alias("git_branches"),
            pl.col("agent_id").filter(pl.col("is_sidechain").fill_null(False)).drop_nulls().n_unique()
              .cast(pl.Int64).alias("subagents"),
            pl.col("path").filter(pl.col("agent_id").is_null()).drop_nulls().unique().sort().alias("files"),
        )
        .with_columns((pl.col("last_time") - pl.col("first_time")).dt.total_seconds().alias("duration_s"))
        .collect()
    )
    counts = (readable.filter(pl.col("session_id").is_not_null()).group_by("session_id", "record_type").len()
              .sort("record_type").group_by("session_id")
              .agg(pl.struct(pl.col("record_type").alias("type"), pl.col("len").cast(pl.Int64).alias("n"))
                   .alias("record_counts")).collect())
    humans = (messages.filter(pl.col("is_human")).group_by("session_id")
              .agg(pl.len().cast(pl.Int64).alias("human_messages"),
                   pl.col("text").sort_by("seq").first().alias("first_prompt")))
    return (base.join(counts, on="session_id", how="left").join(humans, on="session_id", how="left")
            .with_columns(pl.col("human_messages").fill_null(0)))


_SESSION_COLUMNS = ["session_id", "title", "title_from_prompt", "project", "slug", "first_time", "last_time", "duration_s", "records",
                    "user_records", "assistant_records", "system_records", "human_messages", "first_prompt",
                    "record_counts", "models", "git_branches", "subagents", "files"]


def build(inputs: dict[str, pl.LazyFrame]) -> dict[str, pl.DataFrame]:
    lines = inputs["session.line"]
    batches = session_batches(lines)
    if len(batches) > 1 and (made := _by_batches(lines, inputs, batches)) is not None:
        return made
    messages, tools = messages_and_tools(conversation(lines))
    return _tables(lines, inputs, sessions(lines, messages), messages, tools, _own_agents(lines))


def _by_batches(lines: pl.LazyFrame, inputs: dict[str, pl.LazyFrame],
                batches: list[list[str]]) -> dict[str, pl.DataFrame] | None:
    """The tables made batch by batch of sessions (memory follows a batch, not the log), the
    lines of no session last; None when a tool call or a subagent spans batches (then the
    first recording across sessions counts, which only a build of everything sees)."""
    all_messages, all_tools, rows, owns = [], [], [], []
    for mine in [*(lines_of_sessions(lines, b) for b in batches), sessionless_lines(lines)]:
        messages, tools = messages_and_tools(conversation(mine))
        all_messages.append(messages)
        all_tools.append(tools)
        rows.append(session_rows(mine, messages))
        owns.append(_own_agents(mine))
    tools = pl.concat(all_tools)
    own = pl.concat(owns)
    if tools["tool_use_id"].is_duplicated().any() or own["agent_id"].is_duplicated().any():
        return None
    return _tables(lines, inputs, _titled(pl.concat(rows), lines), pl.concat(all_messages).sort("seq"),
                   tools.sort("call_seq", "tool_use_id"), own)


def update(previous: dict[str, pl.DataFrame], delta: dict[str, pl.LazyFrame],
           inputs: dict[str, pl.LazyFrame]) -> dict[str, pl.DataFrame]:
    """Sessions are made again only where new lines touch them (from all their lines); what
    crosses sessions (titles, subagent types, commits and their links) is made again from all
    events, reading only the columns it needs."""
    new = delta["session.line"]
    if rewritten(new):
        raise NeedsRebuild("a transcript was rewritten")
    sessionless = pl.col("session_id").is_null() & (pl.col("agent_id").is_not_null()
                                                      | pl.col("record_type").is_in(["user", "assistant"]))
    if new.filter(sessionless).head(1).collect().height:
        raise NeedsRebuild("a message without a session")  # it belongs to no session to make again
    lines = inputs["session.line"]
    touched = touched_sessions(new)
    mine = lines_of_sessions(lines, touched).collect().lazy()  # read once: several tables are made from them
    messages, tools = messages_and_tools(conversation(mine))
    untouched = ~pl.col("session_id").is_in(touched).fill_null(False)
    kept_tools = previous["tool_calls"].filter(untouched)
    if kept_tools.join(tools.select("tool_use_id"), on="tool_use_id", how="semi").height:
        raise NeedsRebuild("a tool call id repeated in another session")
    kept = previous["sessions"].filter(untouched).drop("title", "title_from_prompt")
    known = None
    if titles_stand(new, lines):  # the titles records gave stand; a first prompt is taken again
        known = previous["sessions"].filter(pl.col("title").is_not_null() & ~pl.col("title_from_prompt")).select(
            pl.col("session_id").alias("for_session"), "title")
    all_sessions = _titled(pl.concat([kept, session_rows(mine, messages)], how="diagonal"), lines, known)
    # a subagent is made from all its own lines (one agent's lines may carry more than one session)
    agents = mine.select("agent_id").drop_nulls().unique().collect()["agent_id"].sort().to_list()
    own = pl.concat([previous["subagents"].filter(~pl.col("agent_id").is_in(agents)).select(_OWN_COLUMNS),
                     _own_agents(lines_of_sessions(lines, agents, column="agent_id"))])
    return _tables(lines, inputs, all_sessions,
                   pl.concat([previous["messages"].filter(untouched), messages]).sort("seq"),
                   pl.concat([kept_tools, tools]).sort("call_seq", "tool_use_id"), own)


_OWN_COLUMNS = ["agent_id", "parent_session_id", "first_time", "last_time", "records", "path"]


def _own_agents(lines: pl.LazyFrame) -> pl.DataFrame:
    """A row per subagent from its own records (they carry the parent's session)."""
    return (
        _readable(lines).filter(pl.col("agent_id").is_not_null() & pl.col("is_sidechain").fill_null(False))
        .group_by("agent_id")
        .agg(pl.col("session_id").drop_nulls().first().alias("parent_session_id"),
             _TIME.min().alias("first_time"), _TIME.max().alias("last_time"), pl.len().cast(pl.Int64).alias("records"),
             pl.col("path").min().alias("path"))
        .select(_OWN_COLUMNS)
        .collect()
    )


def _tables(lines: pl.LazyFrame, inputs: dict[str, pl.LazyFrame], session_table: pl.DataFrame,
            messages: pl.DataFrame, tools: pl.DataFrame, own: pl.DataFrame) -> dict[str, pl.DataFrame]:
    commits = commits_table(inputs["git.commit"].collect())
    linked = links(commits, session_table, tools)
    return {
        "sessions": session_table,
        "messages": messages,
        "tool_calls": tools,
        "subagents": subagents(own, inputs["session.meta"], tools),
        "commits": commits,
        "session_commits": linked,
        **_projects.tables(session_table, commits, linked, _projects.configured(inputs["projects.configured"])),
    }
