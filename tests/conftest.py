from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from chronicle.events import Annotation
from chronicle.store import EventLog

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


def note(i: int, *, stream: str = "doc:1", event_id: str | None = None, value: str | None = None) -> Annotation:
    return Annotation(stream=stream, event_id=event_id or f"e{i}", target=stream, key="k",
                      value=value if value is not None else str(i), author="test")


@pytest.fixture
def log(tmp_path: Path) -> EventLog:
    with EventLog.init(tmp_path / "log") as lg:
        yield lg


def envelope(lg: EventLog) -> pl.DataFrame:
    return lg.snapshot().envelope().collect()


def run_cli(*args: str, root: Path, stdin: bytes | None = None, check: bool = False) -> subprocess.CompletedProcess:
    env = {**os.environ, "CHRONICLE_ROOT": str(root)}
    proc = subprocess.run([sys.executable, "-m", "chronicle", *args], input=stdin, capture_output=True, env=env, timeout=120)
    if check and proc.returncode != 0:
        raise AssertionError(f"chronicle {' '.join(args)} exited {proc.returncode}: {proc.stderr.decode()}")
    return proc


@pytest.fixture(scope="module")
def viewer_ws(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workspace full of hostile text for the viewer's tests (one per test module)."""
    from web_helpers import build_workspace

    return build_workspace(tmp_path_factory.mktemp("viewer"))


@pytest.fixture(scope="module")
def viewer(viewer_ws: Path):
    """`chronicle serve` on that workspace, as a real process."""
    from web_helpers import Viewer

    v = Viewer(viewer_ws)
    yield v
    v.stop()


def kill_at_random(args: list[str], wait: float, on_line) -> None:
    """Run a child that prints ``ready`` then a line per thing it finished (what it acknowledged);
    hand each line to ``on_line`` while it runs, SIGKILL it after ``wait`` seconds, and fail if it
    died of anything else (a child that died on its own is a bug, not a crash test)."""
    import signal
    import threading
    import time

    child = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert child.stdout is not None and child.stdout.readline() == "ready\n", child.stderr.read()

    def reader() -> None:
        for line in child.stdout:  # type: ignore[union-attr]
            on_line(line)

    t = threading.Thread(target=reader)
    t.start()
    time.sleep(wait)
    child.send_signal(signal.SIGKILL)
    child.wait()
    t.join()
    assert child.returncode == -signal.SIGKILL, child.stderr.read()  # type: ignore[union-attr]

