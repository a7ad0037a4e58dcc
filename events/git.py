"""``git.commit``: one event per commit of a watched repository."""

from __future__ import annotations

from .envelope import Event, UtcDatetime


class GitCommit(Event, frozen=True, tag="git.commit"):
    repo: str
    sha: str
    parents: list[str]
    author_name: str
    author_email: str
    authored_at: UtcDatetime
    committer_name: str
    committer_email: str
    committed_at: UtcDatetime
    message: str
    #: JSON list of {"path", "status", "added", "removed"}.
    files_json: str
