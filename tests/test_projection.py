"""The projection engine: determinism, incremental = full, blue/green, as-of, workspace modules."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import polars as pl
import pytest

from chronicle.events import SessionLine, SourceError
from chronicle.ingest.sessions import SessionIngester
from chronicle.projection import Engine, ProjectionError, discover
from chronicle.store import EventLog

from conftest import ROOT, note


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob("*.*")) if p.is_file() and not p.name.startswith(("_", "."))}


def _fill(log: EventLog, start: int, n: int) -> None:
    log.append([note(i, stream=f"doc:{i % 3}") for i in range(start, start + n)])


def test_two_full_rebuilds_give_identical_bytes(log: EventLog, tmp_path: Path) -> None:
    _fill(log, 0, 50)
    SessionIngester(log, tmp_path / "ingest.lock").run([ROOT / "data" / "examples" / "claude-projects"])
    log.seal()
    _fill(log, 50, 10)
    a, b = tmp_path / "a", tmp_path / "b"
    Engine(a, discover()).run(log.snapshot(), full=True)
    Engine(b, discover()).run(log.snapshot(), full=True)
    tables = {name for name in _digests(a) if name.endswith(".parquet")}
    assert {"events_by_type.parquet", "sessions.parquet", "api_calls.parquet", "tool_calls.parquet"} <= tables
    no_events_for = {"ingest_errors", "commits", "session_commits", "labels", *discover()["experiments"].outputs}
    assert all(pl.read_parquet(a / t).height > 0 for t in tables - {f"{n}.parquet" for n in no_events_for})
    assert _digests(a) == _digests(b)


def test_incremental_update_equals_full_rebuild(log: EventLog, tmp_path: Path) -> None:
    inc = Engine(tmp_path / "inc", discover())
    for round_ in range(3):
        _fill(log, round_ * 20, 20)
        log.append([SessionLine(stream="session:s", event_id=f"bad{round_}", path="p.jsonl", generation=0,
                                line_no=round_ + 1, offset=round_ * 10, raw=b"{", error="invalid JSON")])
        outcomes = inc.run(log.snapshot())
        if round_:
            fed = {"*", "annotation", "session.line"}  # the input types these rounds add to
            incremental = {n for n, p in discover().items() if p.update is not None and fed & set(p.inputs)}
            assert {o.action for o in outcomes if o.name in incremental} == {"updated"}
    Engine(tmp_path / "full", discover()).run(log.snapshot(), full=True)
    for t in ("events_by_type", "ingest_errors"):
        assert pl.read_parquet(tmp_path / "inc" / f"{t}.parquet").equals(pl.read_parquet(tmp_path / "full" / f"{t}.parquet"))
    assert pl.read_parquet(tmp_path / "inc" / "ingest_errors.parquet")["line_no"].to_list() == [1, 2, 3]
    assert {o.action for o in inc.run(log.snapshot())} == {"current"}
    errors = tmp_path / "inc" / "ingest_errors.parquet"
    before = errors.stat().st_mtime_ns
    # a line without an error: the update finds nothing to add and rewrites nothing
    log.append([SessionLine(stream="session:s", event_id="good", path="p.jsonl", generation=0, line_no=4, offset=30,
                            raw=b"{}\n", record_type="user")])
    assert {o.name: o.action for o in inc.run(log.snapshot())}["ingest_errors"] == "updated"
    assert errors.stat().st_mtime_ns == before


def test_a_damaged_table_is_rebuilt_not_merged_into(log: EventLog, tmp_path: Path) -> None:
    _fill(log, 0, 10)
    engine = Engine(tmp_path / "inc", discover())
    engine.run(log.snapshot(), ["events_by_type"])
    (tmp_path / "inc" / "events_by_type.parquet").write_bytes(b"not parquet at all")
    _fill(log, 10, 5)
    assert [o.action for o in engine.run(log.snapshot(), ["events_by_type"])] == ["built"]
    Engine(tmp_path / "full", discover()).run(log.snapshot(), ["events_by_type"], full=True)
    assert pl.read_parquet(tmp_path / "inc" / "events_by_type.parquet").equals(
        pl.read_parquet(tmp_path / "full" / "events_by_type.parquet"))


def test_ingest_errors_lists_every_error_event_with_location(log: EventLog, tmp_path: Path) -> None:
    log.append([
        SessionLine(stream="session:s", path="a.jsonl", generation=0, line_no=1, offset=0, raw=b"{}\n", record_type="user"),
        SessionLine(stream="session:s", path="a.jsonl", generation=0, line_no=2, offset=3, raw=b"\xff\n", error="invalid UTF-8"),
        SourceError(stream="source:b.jsonl", path="b.jsonl", error="permission denied"),
    ])
    Engine(tmp_path / "t", discover()).run(log.snapshot())
    errors = pl.read_parquet(tmp_path / "t" / "ingest_errors.parquet")
    assert errors.select("path", "line_no", "offset", "error").rows() == [
        ("a.jsonl", 2, 3, "invalid UTF-8"), ("b.jsonl", None, None, "permission denied")]


def test_as_of_build_equals_a_build_made_then(log: EventLog, tmp_path: Path) -> None:
    _fill(log, 0, 30)
    then = Engine(tmp_path / "then", discover())
    then.run(log.snapshot())
    head = log.snapshot().head
    _fill(log, 30, 30)
    log.seal()
    Engine(tmp_path / "now", discover()).run(log.snapshot().as_of(head), full=True)
    assert _digests(tmp_path / "then") == _digests(tmp_path / "now")


def test_changed_code_forces_a_full_rebuild(log: EventLog, tmp_path: Path) -> None:
    _fill(log, 0, 5)
    folder = tmp_path / "mine"
    folder.mkdir()
    module = folder / "note_values.py"
    source = '''
import polars as pl
INPUTS = ["annotation"]
OUTPUTS = ["note_values"]
def build(inputs):
    return {"note_values": inputs["annotation"].select("seq", "value").sort("seq").collect()}
'''
    module.write_text(source)
    tables = tmp_path / "tables"
    assert [o.action for o in Engine(tables, discover([folder])).run(log.snapshot(), ["note_values"])] == ["built"]
    assert [o.action for o in Engine(tables, discover([folder])).run(log.snapshot(), ["note_values"])] == ["current"]
    module.write_text(source.replace('"seq", "value"', '"seq", "value", "author"'))
    assert [o.action for o in Engine(tables, discover([folder])).run(log.snapshot(), ["note_values"])] == ["built"]
    assert pl.read_parquet(tables / "note_values.parquet").columns == ["seq", "value", "author"]


def test_a_failing_projection_replaces_nothing(log: EventLog, tmp_path: Path) -> None:
    _fill(log, 0, 5)
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "fragile.py").write_text(
        'import polars as pl\nINPUTS = ["annotation"]\nOUTPUTS = ["fragile"]\n'
        'def build(inputs):\n    df = inputs["annotation"].collect()\n'
        '    if df.height > 5:\n        raise ValueError("too many")\n    return {"fragile": df.select("seq")}\n')
    tables = tmp_path / "tables"
    engine = Engine(tables, discover([folder]))
    engine.run(log.snapshot(), ["fragile"])
    before = _digests(tables)
    _fill(log, 5, 1)
    with pytest.raises(ProjectionError, match="fragile failed: ValueError: too many"):
        engine.run(log.snapshot(), ["fragile"])
    assert _digests(tables) == before
    assert len(list((tables / ".gen" / "fragile").iterdir())) == 1, "the failed build left no generation behind"


def test_workspace_projection_may_not_take_a_builtin_name(tmp_path: Path) -> None:
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "events_by_type.py").write_text("INPUTS=[]\nOUTPUTS=['x']\ndef build(i): return {}\n")
    with pytest.raises(ProjectionError, match="already taken"):
        discover([folder])


def test_unknown_projection_name_lists_the_known_ones(log: EventLog, tmp_path: Path) -> None:
    with pytest.raises(ProjectionError, match="events_by_type"):
        Engine(tmp_path, discover()).run(log.snapshot(), ["nope"])


def test_rebuilds_in_several_processes_keep_every_checkpoint(tmp_path: Path) -> None:
    import json
    import os
    import subprocess
    import sys

    from chronicle.workspace import Workspace

    ws = Workspace.at(tmp_path / "ws")
    ws.init()
    SessionIngester(ws.open_log(), ws.data / "ingest.lock").run([ROOT / "data" / "examples" / "claude-projects"])
    env = {**os.environ, "CHRONICLE_ROOT": str(ws.root)}
    names = ["usage", "events_by_type", "ingest_errors", "conversations", "episodes"]
    procs = [subprocess.Popen([sys.executable, "-m", "chronicle", "rebuild", "--full", n], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for n in names]
    assert [p.wait(timeout=120) for p in procs] == [0] * len(names)
    checkpoints = json.loads((ws.tables_dir / "_checkpoints.json").read_text())
    head = ws.open_log().snapshot().head
    assert {n: checkpoints[n]["seq"] for n in names} == {n: head for n in names}


UPDATING = '''
import os, time
import polars as pl
INPUTS = ["annotation"]
OUTPUTS = ["{name}_notes"]
def build(inputs):
    return {{"{name}_notes": inputs["annotation"].select("seq").sort("seq").collect()}}
def update(previous, delta):
    with open(os.environ["SPANS"], "a") as fh:
        fh.write(f"{name} start {{time.monotonic()}}\\n")
    time.sleep(0.4)
    if "{name}" == "broken" and os.environ.get("BREAK"):
        raise ValueError("broken on purpose")
    with open(os.environ["SPANS"], "a") as fh:
        fh.write(f"{name} end {{time.monotonic()}}\\n")
    return {{"{name}_notes": pl.concat([previous["{name}_notes"], delta["annotation"].select("seq").collect()])}}
'''


def test_updates_run_side_by_side_and_one_failing_leaves_the_others_committed(log: EventLog, tmp_path: Path,
                                                                              monkeypatch) -> None:
    folder = tmp_path / "mine"
    folder.mkdir()
    for name in ("steady", "broken"):
        (folder / f"{name}.py").write_text(UPDATING.format(name=name))
    spans = tmp_path / "spans"
    monkeypatch.setenv("SPANS", str(spans))
    tables = tmp_path / "tables"
    _fill(log, 0, 3)
    engine = Engine(tables, discover([folder]))
    assert [o.action for o in engine.run(log.snapshot(), ["steady", "broken"])] == ["built", "built"]
    _fill(log, 3, 2)
    assert [o.action for o in engine.run(log.snapshot(), ["steady", "broken"])] == ["updated", "updated"]
    times = {tuple(line.split()[:2]): float(line.split()[2]) for line in spans.read_text().splitlines()}
    if (os.cpu_count() or 1) > 1:
        assert times[("broken", "start")] < times[("steady", "end")] and times[("steady", "start")] < times[("broken", "end")], \
            "the two updates overlap"
    _fill(log, 5, 2)
    monkeypatch.setenv("BREAK", "1")
    with pytest.raises(ProjectionError, match="broken failed: ValueError: broken on purpose"):
        engine.run(log.snapshot(), ["steady", "broken"])
    checkpoints = engine.checkpoints()
    assert checkpoints["steady"]["seq"] == log.snapshot().head == 7, "the update that worked is committed"
    assert checkpoints["broken"]["seq"] == 5, "the one that failed keeps its tables and checkpoint"
    assert pl.read_parquet(tables / "steady_notes.parquet")["seq"].to_list() == list(range(1, 8))


PARTED = '''
import polars as pl
from chronicle.projection import NeedsRebuild
INPUTS = ["annotation"]
OUTPUTS = ["notes"]
def build(inputs):
    df = inputs["annotation"].select("seq", "value").sort("seq").collect()
    return {"notes": df.head(2) if (df["value"] == "shrink").any() else df}
def update(previous, delta):
    new = delta["annotation"].select("seq", "value").sort("seq").collect()
    if (new["value"] == "shrink").any():
        raise NeedsRebuild("shrink")
    return {"notes": pl.concat([previous["notes"], new])}
'''


def test_a_large_table_is_written_in_parts_and_an_update_rewrites_only_the_parts_it_changed(
        log: EventLog, tmp_path: Path) -> None:
    from chronicle.committed import load_checkpoints
    from chronicle.projection import read_tables

    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "parted.py").write_text(PARTED)
    tables = tmp_path / "tables"
    engine = Engine(tables, discover([folder]), part_rows=4)
    _fill(log, 0, 10)
    engine.run(log.snapshot(), ["parted"])
    first = load_checkpoints(tables)["parted"]
    assert first["parts"] == {"notes": 3} and not (tables / "notes.parquet").exists()
    assert sorted(p.name for p in (tables / "notes").iterdir()) == [f"part-0000{i}.parquet" for i in range(3)]
    assert pl.read_parquet(tables / "notes" / "*.parquet")["seq"].to_list() == list(range(1, 11)), "plain files"
    inodes = {p.name: p.stat().st_ino for p in (tables / first["gen"] / "notes").iterdir()}
    _fill(log, 10, 1)
    assert engine.run(log.snapshot(), ["parted"])[0].action == "updated"
    second = load_checkpoints(tables)["parted"]
    new = tables / second["gen"] / "notes"
    assert {p.name: p.stat().st_ino == inodes[p.name] for p in new.iterdir()} == {
        "part-00000.parquet": True, "part-00001.parquet": True, "part-00002.parquet": False}, \
        "the parts the update left as they were are linked, the last one written"
    got = read_tables(tables, ["notes"])[0]["notes"]
    full = tmp_path / "full"
    Engine(full, discover([folder]), part_rows=4).run(log.snapshot(), ["parted"], full=True)
    assert got.equals(read_tables(full, ["notes"])[0]["notes"]) and got["seq"].to_list() == list(range(1, 12))
    full_gen = full / load_checkpoints(full)["parted"]["gen"]
    for part in sorted((full_gen / "notes").iterdir()):
        assert part.read_bytes() == (new / part.name).read_bytes(), f"{part.name}: linked or written, the same bytes"
    assert Engine(tables, discover([folder])).state(discover([folder])["parted"], second, log.snapshot().head) == "ok"
    (new / "part-00000.parquet").write_bytes(b"damaged")
    assert engine.state(discover([folder])["parted"], second, log.snapshot().head) == "damaged", "every part is checked"
    log.append([note(99, value="shrink")])
    assert engine.run(log.snapshot(), ["parted"])[0].action == "built"
    assert (tables / "notes.parquet").exists() and not (tables / "notes").exists(), "one file again, the parts gone"
    assert read_tables(tables, ["notes"])[0]["notes"].height == 2
