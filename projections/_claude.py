"""Shared reading of ``session.line`` for the Claude Code projections.

Only each file's latest generation counts: when a file is rewritten, the
lines of its earlier generations stay in the log but no longer describe it.

A record recorded more than once (a resumed session repeats records in a new
file; a renamed or rotated file is read again under its new name) counts once,
as its latest recording: records are identified by ``uuid``, or by their bytes
when they have none. A file that was deleted keeps its records: the log is the
backup.
"""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec
import polars as pl

TOKEN_COLUMNS = ["input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens"]


def latest_generation(lines: pl.LazyFrame) -> pl.LazyFrame:
    latest = lines.group_by("path").agg(pl.col("generation").max().alias("_latest"))
    return lines.join(latest, on="path").filter(pl.col("generation") == pl.col("_latest")).drop("_latest")


def rewritten(lines: pl.LazyFrame) -> bool:
    """Whether these lines start a new generation of a file (its earlier lines no longer count)."""
    return lines.filter((pl.col("generation") > 0) & (pl.col("offset") == 0)).select("path").head(1).collect().height > 0


def touched_sessions(delta: pl.LazyFrame) -> list[str]:
    """The sessions new lines belong to (a subagent's lines carry its parent's session)."""
    return delta.select("session_id").drop_nulls().unique().collect()["session_id"].sort().to_list()


#: A full build of a projection made per session reads about this many bytes of lines at a time.
BATCH_BYTES = 192 << 20


def session_batches(lines: pl.LazyFrame) -> list[list[str]]:
    """The sessions, in groups of about BATCH_BYTES of lines each (a session is never split):
    a full build made batch by batch holds one batch's lines at a time, not the log's."""
    budget = BATCH_BYTES
    sizes = (lines.select("session_id", "size").filter(pl.col("session_id").is_not_null())
             .group_by("session_id").agg(pl.col("size").sum()).sort("session_id").collect())
    batches: list[list[str]] = []
    batch: list[str] = []
    total = 0
    for sid, size in sizes.iter_rows():
        if batch and total + size > budget:
            batches.append(batch)
            batch, total = [], 0
        batch.append(sid)
        total += size
    if batch:
        batches.append(batch)
    return batches


def sessionless_lines(lines: pl.LazyFrame) -> pl.LazyFrame:
    """The lines that belong to no session, in the files' latest generations (see lines_of_sessions)."""
    return lines.filter(pl.col("session_id").is_null()).join(_latest_pairs(lines), on=["path", "generation"], how="semi")


def lines_of_sessions(lines: pl.LazyFrame, sessions: list[str], column: str = "session_id") -> pl.LazyFrame:
    """Every line of these sessions (or of the values of another ``column``, such as
    agents), in the files' latest generations as all lines see them: what a projection
    made per session re-reads for the sessions a delta touched. A record is (session,
    uuid), so the sessions' records dedupe as they do among all lines."""
    return lines.filter(pl.col(column).is_in(sessions)).join(_latest_pairs(lines), on=["path", "generation"], how="semi")


def _latest_pairs(lines: pl.LazyFrame) -> pl.LazyFrame:
    """(path, generation) of each file's latest generation, over all lines."""
    return latest_generation(lines.select("path", "generation")).unique()


def current_lines(lines: pl.LazyFrame) -> pl.LazyFrame:
    """Latest generations, each record once: a record is (session, uuid), so another
    session reusing a uuid keeps its own; of a record's copies (a resumed session
    repeats records, a renamed file is read again) the latest recording counts, so
    the tables equal a fresh ingest of the files as they are now. Reads ``raw``:
    for the slow projections."""
    identity = pl.coalesce(
        pl.col("session_id").fill_null("") + "\x00" + pl.col("uuid"),
        pl.col("raw").hash().cast(pl.String) + ":" + pl.col("raw").bin.size().cast(pl.String),
    )
    return (
        latest_generation(lines)
        .with_columns(identity.alias("_identity"))
        .sort("seq").unique("_identity", keep="last", maintain_order=True).drop("_identity")
    )


Frame = TypeVar("Frame", pl.DataFrame, pl.LazyFrame)


def best_copies(copies: Frame) -> Frame:
    """Each call's best copy (most tokens, then the subagent's own record, then the
    latest): a total order, so the best of best copies is the best of all copies."""
    return (copies.sort(["message_id", "request_id", "total_tokens", "embedded", "seq"],
                        descending=[False, False, True, False, True], nulls_last=True)
            .unique(subset=["message_id", "request_id"], keep="first", maintain_order=True))


def in_call_order(calls: Frame) -> Frame:
    # path and line_no break ties (Codex calls have no ids), so any build gives one order
    return calls.sort(["time", "message_id", "request_id", "path", "line_no"], nulls_last=True)


def api_calls(lines: pl.LazyFrame) -> pl.LazyFrame:
    """One row per API call (NOTES.md): a call is a (message.id, requestId)
    pair; among its copies (one per content block, plus subagent copies inside
    ``progress`` records) keep the one with the most tokens; skip <synthetic>.
    On a tie the subagent's own record wins over its copy in the parent's
    ``progress`` record (it names the subagent), then the latest recorded (a
    renamed file's new name). Never reads ``raw``, so it stays fast."""
    total = pl.sum_horizontal([pl.col(c).fill_null(0) for c in TOKEN_COLUMNS])
    copies = (
        latest_generation(lines)
        .filter(pl.col("message_id").is_not_null()
                & ((pl.col("record_type") == "assistant") | pl.col("embedded").fill_null(False))
                & (pl.col("model").fill_null("") != "<synthetic>"))
        .with_columns(total.alias("total_tokens"), pl.col("embedded").fill_null(False))
    )
    return in_call_order(
        best_copies(copies)
        .select(
            "message_id", "request_id", "model", "session_id",
            pl.col("agent_id").alias("subagent_id"), "is_sidechain", "embedded",
            pl.col("timestamp").str.to_datetime(time_zone="UTC", strict=False).alias("time"),
            pl.col("cwd").alias("project"),
            *[pl.col(c).fill_null(0).cast(pl.Int64) for c in TOKEN_COLUMNS],
            pl.col("cache_5m_input_tokens").cast(pl.Int64).alias("cache_creation_5m_tokens"),
            pl.col("cache_1h_input_tokens").cast(pl.Int64).alias("cache_creation_1h_tokens"),
            "total_tokens", "path", "line_no", "seq",
            pl.lit("claude-code").alias("agent"), pl.lit(None, pl.Int64).alias("reasoning_output_tokens"),
        )
    )


# ----------------------------------------------------------- message content

class Block(msgspec.Struct):
    type: str = ""
    text: Any = None
    thinking: Any = None
    id: str | None = None
    name: str | None = None
    input: msgspec.Raw = msgspec.Raw()
    tool_use_id: str | None = None
    is_error: Any = None
    content: msgspec.Raw = msgspec.Raw()


class _Message(msgspec.Struct):
    content: str | list[Block] | None = None


class _Record(msgspec.Struct):
    message: _Message | None = None
    summary: Any = None
    title: Any = None


_RECORD = msgspec.json.Decoder(_Record)


def parse(raw: bytes) -> _Record | None:
    """The message content (and summary/title) of a record; None when it does not have the usual shape."""
    try:
        return _RECORD.decode(raw)
    except msgspec.DecodeError:
        return None
