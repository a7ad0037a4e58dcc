"""projects and session_projects: which project each session belongs to, and each project's tier.

A project is configured (``[projects.ID]`` in chronicle.toml, recorded as a
``projects.configured`` event) or inferred: a session whose working folder lies
in no configured project's roots belongs to the project rooted at the git
repository it works in (the deepest recorded one holding its folder), else at
its folder. An inferred project's id is its root's last name, made unique with
a hash of the root when two share one.

Instrumentation tier, from the commits of the project's repositories:
1 when a commit names a recorded session (a ``Claude-Session:`` trailer, say),
2 when commits only say an agent took part (``Co-Authored-By: Claude``,
``Generated with Claude Code``), 3 when they say neither (or there are none).
"""

from __future__ import annotations

import hashlib
import json
import re

import polars as pl

from chronicle.projections._commits import _UUID, _inside

_AGENT = re.compile(r"co-authored-by:[^\n]*\b(claude|codex|copilot|cursor|aider|gemini)\b|generated with \[?(claude|codex)",
                    re.I)
PROJECT_SCHEMA = {
    "project_id": pl.String, "name": pl.String, "roots": pl.List(pl.String), "repos": pl.List(pl.String),
    "tier": pl.Int64, "configured": pl.Boolean, "status": pl.String, "sessions": pl.Int64, "commits": pl.Int64,
    "linked_commits": pl.Int64, "first_activity": pl.Datetime("us", "UTC"), "last_activity": pl.Datetime("us", "UTC"),
}


def configured(events: pl.LazyFrame) -> dict[str, dict]:
    """The [projects] section as last recorded (``{}`` when never)."""
    last = events.sort("seq").select("projects_json").tail(1).collect()
    return json.loads(last["projects_json"][0]) if last.height else {}


def tables(sessions: pl.DataFrame, commits: pl.DataFrame, links: pl.DataFrame,
           config: dict[str, dict]) -> dict[str, pl.DataFrame]:
    repos = sorted(set(commits["repo"].to_list()))
    own = {pid: p for pid, p in sorted(config.items())}
    owner_of_root = sorted(((r.rstrip("/"), pid) for pid, p in own.items() for r in p.get("roots", [])),
                           key=lambda rp: -len(rp[0]))
    # decided per distinct folder (a few hundred), not per session (tens of thousands)
    configured_of: dict[str, str] = {}
    root_of: dict[str, str] = {}
    for folder in sessions["project"].drop_nulls().unique().sort().to_list():
        pid = next((p for r, p in owner_of_root if _inside(folder, r)), None)
        if pid is not None:
            configured_of[folder] = pid
        else:
            root_of[folder] = max((r for r in repos if _inside(folder, r)), key=len, default=folder)
    ids = _inferred_ids(sorted(set(root_of.values())), taken=set(own))
    project_of = {**configured_of, **{folder: ids[root] for folder, root in root_of.items()}}
    membership = (sessions.select("session_id", pl.col("project").replace_strict(project_of, default=None,
                                                                                 return_dtype=pl.String)
                                  .alias("project_id"))
                  .drop_nulls("project_id").sort("session_id"))
    declared = {pid: {"name": p.get("name") or pid, "roots": sorted(p.get("roots", [])), "repos": p.get("repos", []),
                      "status": p.get("status", "active"), "configured": True} for pid, p in own.items()}
    for root, pid in ids.items():
        declared[pid] = {"name": pid, "roots": [root], "repos": [], "status": "active", "configured": False}
    per_project = (sessions.join(membership, on="session_id")
                   .group_by("project_id").agg(pl.len().cast(pl.Int64).alias("sessions"),
                                               pl.min_horizontal(pl.col("first_time").min(), pl.col("last_time").min())
                                               .alias("first"),
                                               pl.max_horizontal(pl.col("first_time").max(), pl.col("last_time").max())
                                               .alias("last")))
    stats = {row["project_id"]: row for row in per_project.iter_rows(named=True)}
    linked = dict(links.join(membership, on="session_id").group_by("project_id")
                  .agg(pl.struct("repo", "sha").n_unique().cast(pl.Int64)).iter_rows())
    known = set(sessions["session_id"].to_list())
    rows = [_project(pid, p, repos, stats.get(pid), linked.get(pid, 0), commits, known)
            for pid, p in sorted(declared.items())]
    return {"projects": pl.DataFrame(rows, schema=PROJECT_SCHEMA), "session_projects": membership}


def _inferred_ids(roots: list[str], taken: set[str]) -> dict[str, str]:
    names: dict[str, list[str]] = {}
    for root in roots:
        names.setdefault(re.split(r"[\\/]", root.rstrip("/\\"))[-1] or "root", []).append(root)
    ids = {}
    for name, same in names.items():
        for root in same:
            unique = len(same) == 1 and name not in taken
            ids[root] = name if unique else f"{name}-{hashlib.sha256(root.encode()).hexdigest()[:6]}"
    return ids


def _project(pid: str, p: dict, repos: list[str], stats: dict | None, linked: int, commits: pl.DataFrame,
             known: set[str]) -> dict:
    own_repos = sorted(set(p["repos"]) | {r for r in repos if any(_inside(root, r) or _inside(r, root)
                                                                   for root in p["roots"])})
    its_commits = commits.filter(pl.col("repo").is_in(own_repos))
    messages = its_commits["message"].to_list()
    if any(set(_UUID.findall(m or "")) & known for m in messages):
        tier = 1
    elif any(_AGENT.search(m or "") for m in messages):
        tier = 2
    else:
        tier = 3
    times = [t for t in (stats and stats["first"], stats and stats["last"], *its_commits["committed_at"].to_list())
             if t is not None]
    return {"project_id": pid, "name": p["name"], "roots": p["roots"], "repos": own_repos, "tier": tier,
            "configured": p["configured"], "status": p["status"], "sessions": stats["sessions"] if stats else 0,
            "commits": its_commits.height, "linked_commits": linked,
            "first_activity": min(times, default=None), "last_activity": max(times, default=None)}
