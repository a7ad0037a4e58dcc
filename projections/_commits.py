"""Links between git commits and the Claude Code sessions that made them.

Methods, strongest first (a pair may be linked by several):

- ``hash_in_tool_result`` (1.0): a tool result shows the commit's hash, as
  ``git commit`` prints it (``[main 3f2a9c1] subject``).
- ``session_trailer`` (1.0): the commit message names the session id (e.g. a
  ``Claude-Session:`` trailer).
- ``commit_command`` (0.8): a ``git commit -m`` tool call in the repository,
  within 10 minutes of the commit, whose message's first line is the subject.
- ``time_and_files`` (0.4-0.8): the commit lands while the session is active
  (from 5 minutes before its first record to 30 after its last) in a
  repository the session works in, and touches files the session's tools
  touched; the confidence grows with the share of the commit's files touched.
"""

from __future__ import annotations

import json
import re
from datetime import timedelta

import polars as pl

from chronicle.projections._json_fields import readable

_PRINTED = re.compile(rb"\[[^\]\\\n]+? ([0-9a-f]{7,40})\]")
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_DASH_M = re.compile(r"""(?:^|\s)-[a-zA-Z]*m\s*(?:"((?:[^"\\]|\\.)*)"|'([^']*)')""", re.S)  # -m, -am, -m"x"
_HEREDOC = re.compile(r"<<\s*'?\"?(\w+)'?\"?\s*\n(.*?)\n\s*\1", re.S)
WINDOW_BEFORE, WINDOW_AFTER, COMMAND_WINDOW = timedelta(minutes=5), timedelta(minutes=30), timedelta(minutes=10)

LINK_SCHEMA = {"session_id": pl.String, "repo": pl.String, "sha": pl.String, "method": pl.String,
               "confidence": pl.Float64, "evidence": pl.String}


def printed_hash(result: bytes) -> str | None:
    m = _PRINTED.search(result)
    return m.group(1).decode() if m else None


def commit_message(command: str) -> str | None:
    """First line of the message of a ``git commit`` command, if it gives one."""
    if "git commit" not in command:
        return None
    m = _HEREDOC.search(command)
    if m:
        text = m.group(2)
    else:
        m = _DASH_M.search(command)
        if not m:
            return None
        text = m.group(1) if m.group(1) is not None else m.group(2)
    first = text.strip().splitlines()[0].strip() if text.strip() else ""
    return first or None


def commits_table(commits: pl.DataFrame) -> pl.DataFrame:
    commits = commits.filter(readable("git.commit", "files_json"))  # others are in ingest_errors
    files = [json.loads(f) for f in commits["files_json"].to_list()]
    return commits.select(
        "repo", "sha", pl.col("sha").str.slice(0, 7).alias("short_sha"), "parents", "author_name", "author_email",
        "authored_at", "committed_at", pl.col("message").str.split("\n").list.first().alias("subject"), "message",
    ).with_columns(
        pl.Series("files", [[f["path"] for f in fs] for fs in files], dtype=pl.List(pl.String)),
        pl.Series("added", [sum(f["added"] or 0 for f in fs) for fs in files], dtype=pl.Int64),
        pl.Series("removed", [sum(f["removed"] or 0 for f in fs) for fs in files], dtype=pl.Int64),
    ).sort("committed_at", "repo", "sha")


def links(commits: pl.DataFrame, sessions: pl.DataFrame, tools: pl.DataFrame) -> pl.DataFrame:
    rows: list[dict] = []
    if commits.height == 0:
        return pl.DataFrame(schema=LINK_SCHEMA)
    by_prefix = {}
    for repo, sha in commits.select("repo", "sha").iter_rows():
        by_prefix.setdefault(sha[:7], []).append((repo, sha))
    # 1. hashes printed in tool results
    for sid, short, tid in tools.filter(pl.col("result_commit").is_not_null()).select(
            "session_id", "result_commit", "tool_use_id").iter_rows():
        for repo, sha in by_prefix.get(short[:7], []):
            if sha.startswith(short):
                rows.append(dict(session_id=sid, repo=repo, sha=sha, method="hash_in_tool_result", confidence=1.0,
                                 evidence=f"tool result {tid} shows {short}"))
    # 2. the session id in the message
    known = set(sessions["session_id"].to_list())
    for repo, sha, message in commits.select("repo", "sha", "message").iter_rows():
        for sid in set(_UUID.findall(message)) & known:
            rows.append(dict(session_id=sid, repo=repo, sha=sha, method="session_trailer", confidence=1.0,
                             evidence="the commit message names the session"))
    # 3. a git commit command with the same subject, close in time, in the repository
    projects = dict(zip(sessions["session_id"], sessions["project"]))
    subjects: dict[str, list[tuple]] = {}
    for repo, sha, subject, when in commits.select(
            "repo", "sha", pl.col("message").str.split("\n").list.first(), "committed_at").iter_rows():
        subjects.setdefault(subject.strip(), []).append((repo, sha, when))
    for sid, command, called, tid in tools.filter(pl.col("command").is_not_null()).select(
            "session_id", "command", "called_at", "tool_use_id").iter_rows():
        msg = commit_message(command)
        for repo, sha, when in subjects.get(msg or "", []):
            if called is not None and abs(when - called) <= COMMAND_WINDOW and _inside(projects.get(sid), repo):
                rows.append(dict(session_id=sid, repo=repo, sha=sha, method="commit_command", confidence=0.8,
                                 evidence=f"tool call {tid}: git commit -m {msg!r}"))
    # 4. time window and touched files
    touched: dict[str, set[str]] = {}
    for sid, path in tools.filter(pl.col("file_path").is_not_null()).select("session_id", "file_path").iter_rows():
        touched.setdefault(sid, set()).add(path)
    spans = sessions.select("session_id", "project", "first_time", "last_time").drop_nulls().rows()
    for repo, sha, when, files in commits.select("repo", "sha", "committed_at", "files").iter_rows():
        for sid, project, first, last in spans:
            if not (first - WINDOW_BEFORE <= when <= last + WINDOW_AFTER and _inside(project, repo)):
                continue
            mine = {p[len(repo) + 1:] for p in touched.get(sid, ()) if p.startswith(repo + "/")}
            overlap = len(mine & set(files)) / len(files) if files else 0.0
            if overlap > 0:
                rows.append(dict(session_id=sid, repo=repo, sha=sha, method="time_and_files",
                                 confidence=round(0.4 + 0.4 * overlap, 3),
                                 evidence=f"{len(mine & set(files))} of {len(files)} files touched in the session"))
    return (pl.DataFrame(rows, schema=LINK_SCHEMA).unique(["session_id", "repo", "sha", "method"], keep="first")
            .sort("session_id", "sha", "confidence", "method", descending=[False, False, True, False]))


def _inside(project: str | None, repo: str) -> bool:
    return project is not None and (project == repo or project.startswith(repo.rstrip("/") + "/"))
