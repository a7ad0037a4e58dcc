"""SIGKILL a real `chronicle rebuild` at random instants, full and incremental.

After every kill, before any recovery: each projection whose tables match the
checkpoint it records (the engine would reuse them) holds exactly what a full
build at that checkpoint's seq holds, so an update merging the next events can
never count one twice; a projection killed mid-swap is found "damaged" (its
files differ from what its checkpoint recorded) and built again. After a
rebuild that is let finish, every table equals a full build at the head.
``make stress`` runs more trials (CHRONICLE_PROJECTION_CRASH_TRIALS).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl

from chronicle.ingest.sessions import SessionIngester
from chronicle.projection import Engine, discover
from chronicle.store import EventLog

from conftest import ROOT

TRIALS = int(os.environ.get("CHRONICLE_PROJECTION_CRASH_TRIALS", "50"))


def _tables(folder: Path, outputs: tuple[str, ...]) -> dict[str, pl.DataFrame]:
    return {t: pl.read_parquet(folder / f"{t}.parquet") for t in outputs}


def _grow(ws: Path, projects: Path, rng: random.Random, trial: int) -> None:
    """New events of every kind the projections read: transcript lines, notes, errors."""
    transcript = projects / "-home-ana-repo" / "5e55a000-0000-4000-8000-000000000002.jsonl"
    with open(transcript, "ab") as fh:
        for i in range(rng.randrange(1, 4)):
            fh.write(json.dumps({
                "type": "assistant", "uuid": f"crash-{trial}-{i}", "sessionId": "5e55a000-0000-4000-8000-000000000002",
                "cwd": "/home/ana/repo", "timestamp": f"2026-03-03T11:{trial % 60:02d}:{i:02d}Z", "requestId": f"r{trial}-{i}",
                "message": {"id": f"m{trial}-{i}", "role": "assistant", "model": "claude-sonnet-4-5",
                            "content": [{"type": "text", "text": f"step {trial} {i}"}],
                            "usage": {"input_tokens": trial, "output_tokens": i + 1}}}).encode() + b"\n")
        if rng.random() < 0.3:
            fh.write(b"{not json\n")
    with EventLog(ws / "data" / "log") as log:
        SessionIngester(log, ws / "data" / "ingest.lock", quiet_seconds=0).run([projects])
    notes = "".join(json.dumps({"type": "annotation", "stream": f"doc:{trial}", "target": f"doc:{trial}", "key": "k",
                                "value": str(j), "author": "crash"}) + "\n" for j in range(rng.randrange(1, 5)))
    subprocess.run([sys.executable, "-m", "chronicle", "append"], input=notes.encode(), check=True,
                   env={**os.environ, "CHRONICLE_ROOT": str(ws)}, capture_output=True)


def test_sigkill_during_rebuilds_never_counts_an_event_twice(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    subprocess.run([sys.executable, "-m", "chronicle", "init"], check=True, capture_output=True,
                   env={**os.environ, "CHRONICLE_ROOT": str(ws)})
    projects = tmp_path / "projects"
    shutil.copytree(ROOT / "data" / "examples" / "claude-projects", projects)
    sys.path.insert(0, str(ROOT / "bench"))
    import transcripts  # a few MB more, so that a rebuild takes long enough to be caught in the middle

    transcripts.generate(projects / "generated", 4)
    tables_dir = ws / "data" / "tables"
    projections = discover()
    rng = random.Random(11)
    killed_mid_work = damaged_seen = 0
    _grow(ws, projects, rng, -1)
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "chronicle", "rebuild", "--full"], check=True, capture_output=True,
                   env={**os.environ, "CHRONICLE_ROOT": str(ws)})
    whole = time.monotonic() - started  # how long a rebuild runs here: kills land anywhere in it
    for trial in range(TRIALS):
        _grow(ws, projects, rng, trial)
        args = ["rebuild", "--full"] if rng.random() < 0.5 else ["rebuild"]
        child = subprocess.Popen([sys.executable, "-m", "chronicle", *args], stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL, env={**os.environ, "CHRONICLE_ROOT": str(ws)})
        time.sleep(rng.uniform(0.3, whole if args[-1] == "--full" else whole * 0.8))
        if child.poll() is None:
            child.send_signal(signal.SIGKILL)
            killed_mid_work += 1
        child.wait()
        snap = EventLog(ws / "data" / "log").snapshot()
        engine = Engine(tables_dir, projections)
        checkpoints = engine.checkpoints()
        for p in projections.values():
            cp = checkpoints.get(p.name)
            state = engine.state(p, cp, snap.head)
            if state == "damaged":
                damaged_seen += 1
            if not (state == "ok" or state.startswith("behind")):
                continue  # not reusable: the next run builds it in full
            reference = tmp_path / "reference"
            Engine(reference, projections).run(snap.as_of(cp["seq"]), [p.name], full=True, out_dir=reference)
            got, want = _tables(tables_dir, p.outputs), _tables(reference, p.outputs)
            for t in p.outputs:
                assert got[t].equals(want[t]), f"trial {trial}: {t} differs from a full build at seq {cp['seq']}"
            shutil.rmtree(reference)
    assert killed_mid_work >= TRIALS // 3, "the kills should land while rebuilds run"
    # let one finish: everything equals a full build at the head
    subprocess.run([sys.executable, "-m", "chronicle", "rebuild"], check=True, capture_output=True,
                   env={**os.environ, "CHRONICLE_ROOT": str(ws)})
    snap = EventLog(ws / "data" / "log").snapshot()
    reference = tmp_path / "final"
    Engine(reference, projections).run(snap, full=True, out_dir=reference)
    for p in projections.values():
        got, want = _tables(tables_dir, p.outputs), _tables(reference, p.outputs)
        for t in p.outputs:
            assert got[t].equals(want[t]), t
    assert not list(tables_dir.glob(".staging-*")), "a killed rebuild's staging folder is cleaned up"
    print(f"{TRIALS} trials, {killed_mid_work} killed mid-run, {damaged_seen} damaged projections rebuilt")


def test_a_crash_between_the_tables_and_their_checkpoint_never_double_counts(tmp_path: Path, monkeypatch) -> None:
    """The window a random kill rarely hits, hit on purpose: the new tables are in
    place, the checkpoint still names the old ones. Before, the next update merged
    the same events again (11 events counted for 8)."""
    from conftest import note

    tables = tmp_path / "tables"
    projections = discover()
    with EventLog.init(tmp_path / "log") as log:
        log.append([note(i) for i in range(5)])
        Engine(tables, projections).run(log.snapshot(), ["events_by_type"])
        log.append([note(i) for i in range(5, 8)])

        def killed(*args: object, **kwargs: object) -> None:
            raise KeyboardInterrupt("killed between the swap and the checkpoint")

        monkeypatch.setattr(Engine, "_checkpoint", killed)
        try:
            Engine(tables, projections).run(log.snapshot(), ["events_by_type"])
        except KeyboardInterrupt:
            pass
        monkeypatch.undo()
        engine = Engine(tables, projections)
        p = projections["events_by_type"]
        assert engine.state(p, engine.checkpoints()["events_by_type"], log.snapshot().head) == "damaged"
        outcome = engine.run(log.snapshot(), ["events_by_type"])[0]
        assert outcome.action == "built"
        counted = pl.read_parquet(tables / "events_by_type.parquet")["events"].sum()
        assert counted == 8
