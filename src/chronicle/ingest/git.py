"""``chronicle ingest git REPO``: one ``git.commit`` event per commit, incrementally.

Reads ``git log --all`` (every ref) twice, once for name-status and once for
numstat, and joins them by sha. Commits already in the log for this repository
are skipped, so a re-run records only new ones.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import polars as pl

from chronicle.errors import UsageError
from chronicle.events import GitCommit
from chronicle.ingest.event_ids import commit_id
from chronicle.store import EventLog

_FIELDS = "%H%x1f%P%x1f%an%x1f%ae%x1f%aI%x1f%cn%x1f%ce%x1f%cI%x1f%B"
_START = "\x1e\x1dcommit\x1d"


class GitError(UsageError):
    """The folder is not a git repository, or git failed (names the repo and git's message)."""


@dataclass
class GitSummary:
    repo: str
    commits: int
    new: int


def _git(repo: Path, *args: str) -> str:
    try:
        proc = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, timeout=600)
    except FileNotFoundError:
        raise GitError("git is not installed") from None
    if proc.returncode != 0:
        raise GitError(f"{repo}: git {args[0]} failed: {proc.stderr.decode(errors='replace').strip()}")
    return proc.stdout.decode("utf-8", errors="replace")


def _utc(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(timezone.utc)


def _records(repo: Path, fmt: str, extra: list[str], since: str | None) -> dict[str, tuple[list[str], list[str]]]:
    """sha -> (header fields, file lines) for every commit."""
    args = ["log", "--all", "--no-color", "-M", f"--format={_START}{fmt}{_START}", *extra]
    if since:
        args.append(f"--since={since}")
    out = _git(repo, *args)
    parts = out.split(_START)
    commits = {}
    # parts: ["", header, files, header, files, ...]
    for i in range(1, len(parts) - 1, 2):
        fields = parts[i].split("\x1f")
        commits[fields[0]] = (fields, [ln for ln in parts[i + 1].splitlines() if ln.strip()])
    return commits


def read_commits(repo: Path, since: str | None = None) -> list[GitCommit]:
    repo = repo.resolve()
    _git(repo, "rev-parse", "--git-dir")
    if not _git(repo, "for-each-ref", "--count=1").strip():
        return []  # a repository without commits
    status = _records(repo, _FIELDS, ["--name-status"], since)
    numstat = _records(repo, "%H", ["--numstat"], since)
    stream = f"git:{repo}"
    events = []
    for sha, (fields, status_lines) in status.items():
        _, parents, an, ae, ad, cn, ce, cd, message = fields
        counts = {}
        for ln in numstat.get(sha, ([], []))[1]:
            added, removed, path = ln.split("\t", 2)
            path = path.split(" => ")[-1].rstrip("}") if " => " in path else path
            counts[path] = (int(added) if added.isdigit() else None, int(removed) if removed.isdigit() else None)
        files = []
        for ln in status_lines:
            cols = ln.split("\t")
            path = cols[-1]
            added, removed = counts.get(path, (None, None))
            files.append({"path": path, "status": cols[0][:1], "old_path": cols[1] if len(cols) == 3 else None,
                          "added": added, "removed": removed})
        events.append(GitCommit(
            stream=stream, event_id=commit_id(str(repo), sha), repo=str(repo), sha=sha,
            parents=parents.split(), author_name=an, author_email=ae, authored_at=_utc(ad),
            committer_name=cn, committer_email=ce, committed_at=_utc(cd), message=message,
            files_json=json.dumps(files, sort_keys=True, separators=(",", ":"))))
    events.sort(key=lambda e: (e.committed_at, e.sha))
    return events


def ingest_git(log: EventLog, repo: Path, since: str | None = None) -> GitSummary:
    commits = read_commits(repo, since)
    repo_s = str(repo.resolve())
    known = set(log.snapshot().frame("git.commit", ["repo", "sha"]).filter(pl.col("repo") == repo_s)
                .collect()["sha"].to_list())
    new = [c for c in commits if c.sha not in known]
    for i in range(0, len(new), 5000):
        log.append(new[i : i + 5000])
    return GitSummary(repo_s, len(commits), len(new))
