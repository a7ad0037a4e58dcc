"""What the daemon (`chronicle watch`) leaves for readers: its state file and its lock.

Stdlib only: `status` and the viewer ask whether the daemon runs and how its
last pass went without importing the daemon (watchfiles, the engine).
"""

from __future__ import annotations

import json
import os

from chronicle.workspace import Workspace

LOCK_NAME = "watch.lock"
STATE_NAME = "watch.json"


def read_state(ws: Workspace) -> dict:
    try:
        return json.loads((ws.data / STATE_NAME).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def is_running(ws: Workspace) -> bool:
    import fcntl

    path = ws.data / LOCK_NAME
    if not path.exists():
        return False
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False
