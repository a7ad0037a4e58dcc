"""Where Claude Code keeps transcripts, and what each file under a root is.

Layout (see the corpus NOTES): ``<root>/<project-slug>/<sessionId>.jsonl``;
subagents as ``agent-<id>.jsonl`` beside the sessions (before 2.1.2) or
``<sessionId>/subagents/agent-<id>.jsonl`` with an optional
``agent-<id>.meta.json``; workflow runs under ``subagents/workflows/`` and
``<sessionId>/workflows/<run>.json``. The slug is lossy, so it is never decoded
into a path: the project path comes from the records' ``cwd``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

#: Files read line by line into ``session.line`` events.
LINE_KINDS = ("session", "subagent", "workflow-journal", "transcript")
#: Files kept whole as ``session.meta`` events.
META_KINDS = ("agent-meta", "workflow")


@dataclass(frozen=True, slots=True)
class SourceFile:
    path: Path  # absolute
    root: Path  # the folder it was found under
    kind: str

    @property
    def rel_path(self) -> str:
        return self.path.relative_to(self.root).as_posix()


def default_roots(env: dict[str, str] | None = None) -> list[Path]:
    """``~/.claude/projects``, ``~/.config/claude/projects`` and each entry of
    ``$CLAUDE_CONFIG_DIR`` (comma-separated; its ``projects`` folder)."""
    env = dict(os.environ) if env is None else env
    home = Path(env.get("HOME", str(Path.home())))
    roots = [home / ".claude" / "projects", home / ".config" / "claude" / "projects"]
    for entry in env.get("CLAUDE_CONFIG_DIR", "").split(","):
        if entry.strip():
            base = Path(entry.strip()).expanduser()
            roots.append(base / "projects" if (base / "projects").is_dir() else base)
    seen, out = set(), []
    for r in roots:
        key = r.resolve() if r.exists() else r
        if key not in seen:
            seen.add(key)
            out.append(key)
    return out


def classify(path: Path) -> str | None:
    name = path.name
    if name.endswith(".jsonl"):
        if name == "journal.jsonl" and "workflows" in path.parts:
            return "workflow-journal"
        if name.startswith("agent-"):
            return "subagent"
        return "session"
    if name.endswith(".meta.json"):
        return "agent-meta"
    if name.endswith(".json") and path.parent.name == "workflows":
        return "workflow"
    return None


def discover(paths: list[Path]) -> list[SourceFile]:
    """Every transcript and sidecar under ``paths`` (roots, project folders or
    files), sorted, each once. Missing paths are skipped (the caller reports)."""
    found: dict[Path, SourceFile] = {}
    for given in paths:
        p = given.expanduser().resolve()
        if p.is_file():
            kind = classify(p)
            if kind:
                found.setdefault(p, SourceFile(p, p.parent, kind))
            continue
        if not p.is_dir():
            continue
        for dirpath, dirnames, filenames in os.walk(p, onerror=None, followlinks=False):
            dirnames.sort()
            for name in sorted(filenames):
                f = Path(dirpath) / name
                kind = classify(f)
                if kind and not f.is_symlink():
                    found.setdefault(f, SourceFile(f, p, kind))
    return sorted(found.values(), key=lambda s: s.path)
