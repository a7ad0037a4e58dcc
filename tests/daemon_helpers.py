"""`chronicle watch` as a real process, for the tests that run one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from conftest import run_cli


class Daemon:
    def __init__(self, ws: Path):
        self.ws = ws
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        env = {**os.environ, "CHRONICLE_ROOT": str(self.ws)}
        self.proc = subprocess.Popen([sys.executable, "-m", "chronicle", "watch"], env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.wait_for(lambda s: s.get("pid") == self.proc.pid and s.get("passes", 0) >= 1 and s.get("socket"))

    def state(self) -> dict:
        try:
            return json.loads((self.ws / "data" / "watch.json").read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return {}

    def wait_for(self, ok, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is None or self.proc.poll() is None, self.proc.stderr.read().decode()
            if ok(self.state()):
                return
            time.sleep(0.05)
        raise AssertionError(f"daemon did not get there in {timeout}s: {self.state()}")

    def caught_up(self, projects: Path) -> None:
        """Wait until status reports nothing left to ingest and the tables are at the head."""
        def done(_state: dict) -> bool:
            out = run_cli("status", "--json", root=self.ws)
            if out.returncode != 0:
                return False
            st = json.loads(out.stdout)
            return (all(r.get("bytes_behind", 0) == 0 and r.get("files_behind", 0) == 0 for r in st["roots"])
                    and st["projections"] and all(p["behind"] == 0 for p in st["projections"]))
        self.wait_for(done)
