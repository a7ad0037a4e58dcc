"""Ids as people type them: a full id, or a unique prefix of one (the 8 characters the
tables and the viewer show); for a document, also DayDreaming's id of the task
(its gen_id, kept as ``task_id``), which names the task's latest attempt.

A prefix that matches several ids is a usage error that lists a few of them;
text that starts no id is returned as it is (the verb says it found nothing,
and a document known only from other events, such as a legacy import's, is
still found by its full id).
"""

from __future__ import annotations

import polars as pl

from chronicle.errors import UsageError
from chronicle.store import Snapshot

_SHOWN = 5


def session_id(snap: Snapshot, text: str) -> str:
    from chronicle.ingest.sources import session_lines

    lines = session_lines(snap, ["session_id"])
    if lines is None:
        return text
    ids = lines.select(pl.col("session_id").unique()).drop_nulls()
    return _one("session", text, ids.filter(pl.col("session_id").str.starts_with(text)).collect()["session_id"])


def doc_id(snap: Snapshot, text: str) -> str:
    if "llm.prompt" not in snap.types():
        return text
    prompts = snap.frame("llm.prompt", ["seq", "doc_id", "task_id"])
    by_task = (prompts.filter(pl.col("task_id") == text).sort("seq").select("doc_id").tail(1).collect())
    if by_task.height and not prompts.filter(pl.col("doc_id") == text).head(1).collect().height:
        return by_task["doc_id"][0]  # DayDreaming's id of the task: its latest attempt
    ids = prompts.select(pl.col("doc_id").unique())
    return _one("document", text, ids.filter(pl.col("doc_id").str.starts_with(text)).collect()["doc_id"])


def _one(kind: str, text: str, matches: pl.Series) -> str:
    found = sorted(matches.to_list())
    if text in found or not found:
        return text
    if len(found) == 1:
        return found[0]
    more = f" and {len(found) - _SHOWN} more" if len(found) > _SHOWN else ""
    raise UsageError(f"{text!r} starts {len(found)} {kind} ids ({', '.join(found[:_SHOWN])}{more}): give more of it")
