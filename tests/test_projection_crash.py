"""SIGKILL a real `chronicle rebuild` at random instants, full and incremental.

After every kill, before any recovery: each projection's committed tables (read
as a reader reads them, through one read of the checkpoints) hold exactly what
a full build at the checkpoint's seq holds, so an update merging the next events
can never count one twice. A build killed before its commit leaves its previous
tables and checkpoint; one killed after it, before publishing the plain files,
is published by the next run. After a rebuild that is let finish, every table
equals a full build at the head, and only committed generations remain.
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
import pytest

from chronicle.ingest.sessions import SessionIngester
from chronicle.committed import table_files
from chronicle.projection import Engine, discover, read_tables
from chronicle.store import EventLog

from conftest import ROOT, note as note_event

TRIALS = int(os.environ.get("CHRONICLE_PROJECTION_CRASH_TRIALS", "50"))


def _tables(folder: Path, outputs: tuple[str, ...]) -> dict[str, pl.DataFrame]:
    return read_tables(folder, list(outputs))[0]


def _grow(ws: Path, projects: Path, rng: random.Random, trial: int) -> None:
    """New events of every kind the projections read: transcript lines, notes, labels, errors."""
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
    # labels too (the labels projection): a later one of the same target supersedes, counts add up
    notes += json.dumps({"type": "annotation", "stream": "labels", "target": f"episode:ep-{rng.randrange(3)}",
                         "key": "reaction", "value": rng.choice(["approve", "correct"]), "author": f"a{trial}",
                         "taxonomy": "reaction.v1"}) + "\n"
    subprocess.run([sys.executable, "-m", "chronicle", "append"], input=notes.encode(), check=True,
                   env={**os.environ, "CHRONICLE_ROOT": str(ws)}, capture_output=True)


def test_sigkill_during_rebuilds_never_counts_an_event_twice(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    subprocess.run([sys.executable, "-m", "chronicle", "init"], check=True, capture_output=True,
                   env={**os.environ, "CHRONICLE_ROOT": str(ws)})
    # small parts: the large tables (messages, tool_calls, api_calls) are written in parts, and updates link
    # the parts they leave as they were: kills land in that too
    (ws / "chronicle.toml").write_text("[projections]\npart_rows = 300\n")
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
            Engine(reference, projections, part_rows=300).run(snap.as_of(cp["seq"]), [p.name], full=True, out_dir=reference)
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
    Engine(reference, projections, part_rows=300).run(snap, full=True, out_dir=reference)
    for p in projections.values():
        got, want = _tables(tables_dir, p.outputs), _tables(reference, p.outputs)
        for t in p.outputs:
            assert got[t].equals(want[t]), t
    checkpoints = json.loads((tables_dir / "_checkpoints.json").read_text())
    for name, cp in checkpoints.items():
        assert [g.name for g in (tables_dir / ".gen" / name).iterdir()] == [Path(cp["gen"]).name], \
            f"{name}: killed builds' generations are removed"
        for t in cp["rows"]:
            for f in table_files(tables_dir, cp, t):
                assert os.path.samefile(f, tables_dir / f.relative_to(tables_dir / cp["gen"])), f
    assert any(cp.get("parts") for cp in checkpoints.values()), "some table was written in parts"
    print(f"{TRIALS} trials, {killed_mid_work} killed mid-run, {damaged_seen} damaged projections rebuilt")


def test_a_crash_at_the_commit_or_before_publishing_never_double_counts(tmp_path: Path, monkeypatch) -> None:
    """The windows a random kill rarely hits, hit on purpose. Before, the tables were
    renamed into place and the checkpoint written after: a crash between them made the
    next update merge the same events again (11 events counted for 8)."""
    from chronicle import committed
    from conftest import note

    tables = tmp_path / "tables"
    projections = discover()
    p = projections["events_by_type"]

    def killed(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt("killed")

    with EventLog.init(tmp_path / "log") as log:
        log.append([note(i) for i in range(5)])
        Engine(tables, projections).run(log.snapshot(), ["events_by_type"])
        log.append([note(i) for i in range(5, 8)])
        # 1. Killed at the commit: the new generation was written, nothing names it.
        monkeypatch.setattr(committed, "commit", killed)
        with pytest.raises(KeyboardInterrupt):
            Engine(tables, projections).run(log.snapshot(), ["events_by_type"])
        monkeypatch.undo()
        engine = Engine(tables, projections)
        assert engine.state(p, engine.checkpoints()["events_by_type"], log.snapshot().head) == "behind by 3"
        assert pl.read_parquet(tables / "events_by_type.parquet")["events"].sum() == 5
        assert engine.run(log.snapshot(), ["events_by_type"])[0].action == "updated"
        assert pl.read_parquet(tables / "events_by_type.parquet")["events"].sum() == 8
        assert len(list((tables / ".gen" / "events_by_type").iterdir())) == 1, "the dead build's generation is gone"
        # 2. Killed after the commit, before the plain files were published.
        log.append([note(i) for i in range(8, 10)])
        monkeypatch.setattr(committed, "publish", killed)
        with pytest.raises(KeyboardInterrupt):
            Engine(tables, projections).run(log.snapshot(), ["events_by_type"])
        monkeypatch.undo()
        assert pl.read_parquet(tables / "events_by_type.parquet")["events"].sum() == 8, "the plain file: not yet"
        tables_read, view = read_tables(tables, ["events_by_type"])
        assert tables_read["events_by_type"]["events"].sum() == 10 and view.seq("events_by_type") == 10
        assert Engine(tables, projections).run(log.snapshot(), ["events_by_type"])[0].action == "current"
        assert pl.read_parquet(tables / "events_by_type.parquet")["events"].sum() == 10, "published by the next run"
        # 3. A build that died before its commit, of a projection that then has nothing new to build:
        # its generation goes all the same
        dead = tables / ".gen" / "events_by_type" / "000000000010-999999-deadbeef"
        dead.mkdir()
        (dead / "events_by_type.parquet").write_bytes(b"half written")
        assert Engine(tables, projections).run(log.snapshot(), ["events_by_type"])[0].action == "current"
        assert not dead.exists()


READER_PROJECTION = """\
import polars as pl
import pytest

INPUTS = ["annotation"]
OUTPUTS = ["left_half", "right_half"]


def build(inputs):
    df = inputs["annotation"].select("seq").collect()
    return {"left_half": df, "right_half": df.with_columns(pl.col("seq") * 2)}
"""

WRITER = """\
import sys
from pathlib import Path
from chronicle.events import Annotation
from chronicle.projection import Engine, discover
from chronicle.store import EventLog

log = EventLog(Path(sys.argv[1]))
engine = Engine(Path(sys.argv[2]), discover([Path(sys.argv[3])]))
for i in range(int(sys.argv[4])):
    log.append([Annotation(stream="doc:r", target="doc:r", key="k", value=str(i), author="w")])
    engine.run(log.snapshot(), ["reader_pair"])
"""


def test_a_reader_sees_every_table_of_a_projection_at_one_checkpoint(tmp_path: Path) -> None:
    """A real writer process commits again and again while this process reads both
    tables of one projection: they always come from the same commit. Reading the two
    plain files one after the other does not promise that (and is not what chronicle does)."""
    folder = tmp_path / "projections"
    folder.mkdir()
    (folder / "reader_pair.py").write_text(READER_PROJECTION)
    tables = tmp_path / "tables"
    with EventLog.init(tmp_path / "log") as log:
        log.append([note_event(0)])
        Engine(tables, discover([folder])).run(log.snapshot(), ["reader_pair"])
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path / "log"), str(tables), str(folder), "60"])
    reads = set()
    try:
        while writer.poll() is None:
            got, view = read_tables(tables, ["left_half", "right_half"])
            left, right = got["left_half"], got["right_half"]
            assert left.height == right.height == view.seq("left_half"), "both tables at one checkpoint"
            assert (right["seq"] == left["seq"] * 2).all()
            reads.add(left.height)
    finally:
        writer.wait(timeout=120)
    assert writer.returncode == 0
    assert len(reads) > 5, "the reads should have met many commits"
