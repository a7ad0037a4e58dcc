"""Claude Code: where it keeps transcripts, and what each file under a root is.

Layout (see the corpus NOTES): ``<root>/<project-slug>/<sessionId>.jsonl``;
subagents as ``agent-<id>.jsonl`` beside the sessions (before 2.1.2) or
``<sessionId>/subagents/agent-<id>.jsonl`` with an optional
``agent-<id>.meta.json``; workflow runs under ``subagents/workflows/`` and
``<sessionId>/workflows/<run>.json``. The slug is lossy, so it is never decoded
into a path: the project path comes from the records' ``cwd``.

This is the example source: a new one copies its shape (see ``sources``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pyarrow as pa

from chronicle.events import SessionLine
import chronicle.ingest.sources.claude_code_lines as claude_code_lines
from chronicle.ingest.sources.base import FirstLine, TranscriptSource


class ClaudeCode(TranscriptSource):
    agent = "claude-code"
    line_event = SessionLine
    line_kinds = ("session", "subagent", "workflow-journal", "transcript")
    session_kind = "session"
    meta_kinds = ("agent-meta", "workflow")
    roots_help = "~/.claude/projects, ~/.config/claude/projects, $CLAUDE_CONFIG_DIR"

    def default_roots(self, env: Mapping[str, str]) -> list[Path]:
        """``~/.claude/projects``, ``~/.config/claude/projects`` and each entry of
        ``$CLAUDE_CONFIG_DIR`` (comma-separated; its ``projects`` folder)."""
        home = Path(env.get("HOME", str(Path.home())))
        roots = [home / ".claude" / "projects", home / ".config" / "claude" / "projects"]
        for entry in env.get("CLAUDE_CONFIG_DIR", "").split(","):
            if entry.strip():
                base = Path(entry.strip()).expanduser()
                roots.append(base / "projects" if (base / "projects").is_dir() else base)
        return roots

    def classify(self, path: Path, first: FirstLine) -> str | None:
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

    def line_table(self, path: str, generation: int, offset: int, line_no: int, data: bytes) -> pa.Table:
        return claude_code_lines.table(path, generation, offset, line_no, data)
