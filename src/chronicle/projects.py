"""The ``[projects]`` section of chronicle.toml, recorded in the log when it changes.

The ``projects`` table is a projection, and a projection reads only the log, so
a replay as of any seq sees the registry as it stood then. Whoever opens the
workspace's projection engine (``Engine.of``) first records the section if it
differs from the last one recorded. Its event id chains on the previous one,
so two processes recording the same change at once record it once.
``data/projects.recorded`` remembers what was recorded last, so an unchanged
section costs one small file read.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from chronicle.workspace import Workspace

MARK = "projects.recorded"


def section(ws: Workspace) -> str:
    """The section as canonical JSON: each project's name, roots (``~`` expanded), repos and status."""
    return json.dumps({pid: {"name": p.name or pid, "roots": sorted(_path(r) for r in p.roots),
                             "repos": sorted(_path(r) for r in p.repos), "status": p.status}
                       for pid, p in sorted(ws.config.projects.items())}, sort_keys=True)


def _path(text: str) -> str:
    return os.path.normpath(os.path.expanduser(text))


def record_configuration(ws: Workspace) -> int | None:
    """Record the section if it differs from the last recorded; the seq recorded, else None."""
    if not (ws.log_dir / "MANIFEST").exists():
        return None
    now = section(ws)
    digest = hashlib.sha256(now.encode()).hexdigest()
    mark = ws.data / MARK
    if _read(mark) == digest:
        return None
    from chronicle.events import ProjectsConfigured

    log = ws.open_log()
    last = log.snapshot().frame("projects.configured", ["seq", "event_id", "projects_json"]).sort("seq").tail(1).collect()
    before, previous_id = (last["projects_json"][0], last["event_id"][0]) if last.height else ("{}", "")
    seq = None
    if json.loads(before) != json.loads(now):
        event_id = "projects-" + hashlib.sha256(f"{previous_id}\0{now}".encode()).hexdigest()[:24]
        seq = log.append([ProjectsConfigured(stream="config:projects", event_id=event_id, projects_json=now)])[0].seq
    try:  # a cache of what the log says: where it cannot be written, the log is read again next time
        tmp = mark.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(digest)
        os.replace(tmp, mark)
    except OSError:
        pass
    return seq


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None
