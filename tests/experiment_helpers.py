"""Shared pieces for the experiment tests: a workspace with the example definitions, a real server."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import polars as pl

from chronicle.store import EventLog

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "data" / "examples" / "experiment"
SECRET = "sk-test-" + "7f3a9c1e5b2d4068a1f0c3e9d7b5a2c4"


def make_workspace(root: Path, provider_toml: str = "") -> Path:
    EventLog.init(root / "data" / "log").close()
    shutil.copytree(EXAMPLE / "1_raw", root / "data" / "1_raw")
    shutil.copytree(EXAMPLE / "cohorts", root / "data" / "cohorts")
    if provider_toml:
        (root / "chronicle.toml").write_text(provider_toml)
    return root


class Server:
    """The misbehaving OpenAI-compatible server, as a real process on loopback."""

    def __init__(self, *args: str):
        self.proc = subprocess.Popen([sys.executable, "-m", "chronicle.testing.openai_server", "--port", "0", *args],
                                     stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline() if self.proc.stdout else ""
        assert line.startswith("listening on "), line
        self.url = line.split()[-1]

    def requests(self) -> list[dict]:
        with urllib.request.urlopen(self.url + "/_requests", timeout=10) as resp:
            return json.loads(resp.read())

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()


def provider_toml(url: str, **extra: object) -> str:
    lines = ["[providers.fake]", f'base_url = "{url}/v1"', 'api_key_env = "FAKE_LLM_KEY"',
             "backoff_seconds = 0.05", "timeout_seconds = 2"]
    lines += [f"{k} = {json.dumps(v)}" for k, v in extra.items()]
    return "\n".join(lines) + "\n"


def env_with_key(root: Path) -> dict[str, str]:
    return {**os.environ, "CHRONICLE_ROOT": str(root), "FAKE_LLM_KEY": SECRET}


def chronicle(*args: str, root: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "chronicle", *args], capture_output=True, text=True,
                          env=env_with_key(root), timeout=timeout)


def frames(root: Path) -> dict[str, pl.DataFrame]:
    snap = EventLog(root / "data" / "log").snapshot()
    return {t: snap.frame(t).collect() for t in ("llm.prompt", "llm.response", "parse.result") if t in snap.types()}
