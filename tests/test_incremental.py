"""Incremental equals full, byte for byte: the real corpus fed in random chunks
across every file (with a rewrite), and after every step each table an update
produced equals a full build of the same log."""

from __future__ import annotations

import hashlib
import random
import shutil
from pathlib import Path

import pytest

from chronicle.ingest.sessions import SessionIngester
from chronicle.projection import Engine, discover
from chronicle.store import EventLog

from conftest import ROOT, SHARED

CORPUS = SHARED / "corpus" / "claude-code"
CODEX = SHARED / "corpus" / "codex"
PROJECTIONS = ["usage", "episodes", "conversations"]


def _feed(src_roots: list[Path], tmp_path: Path, steps: int, seed: int, part_rows: int = 100_000) -> None:
    """Every file under ``src_roots`` (each copied under its own name), fed in random chunks."""
    files = sorted(p for r in src_roots for p in r.rglob("*") if p.is_file() and p.suffix in (".jsonl", ".json"))
    home = {f: r for r in src_roots for f in files if f.is_relative_to(r)}
    rng = random.Random(seed)
    src = tmp_path / "src"
    written = {f: 0 for f in files}
    actions: dict[str, set[str]] = {p: set() for p in PROJECTIONS}
    with EventLog.init(tmp_path / "log") as log:
        ingester = SessionIngester(log, tmp_path / "ingest.lock", quiet_seconds=3600)
        inc = Engine(tmp_path / "inc", discover(), part_rows=part_rows)
        for step in range(steps):
            last = step == steps - 1
            for f in (files if last else rng.sample(files, k=max(1, len(files) // 2))):
                data = f.read_bytes()
                upto = len(data) if last else min(len(data), written[f] + rng.randrange(1, 20_000))
                target = src / home[f].name / f.relative_to(home[f])
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data[:upto])
                written[f] = upto
            if step == steps // 2:  # a rewrite: a file shrinks; its earlier lines no longer count
                victim = next(f for f in files if f.suffix == ".jsonl" and written[f] > 10)
                (src / home[victim].name / victim.relative_to(home[victim])).write_bytes(victim.read_bytes()[: written[victim] // 2])
            ingester.run([src])
            for o in inc.run(log.snapshot(), PROJECTIONS):
                actions[o.name].add(o.action)
            full = tmp_path / f"full{step}"
            Engine(full, discover(), part_rows=part_rows).run(log.snapshot(), PROJECTIONS, full=True)
            published = sorted(p.relative_to(full) for p in full.rglob("*.parquet") if ".gen" not in p.parts)
            assert published == sorted(p.relative_to(tmp_path / "inc") for p in (tmp_path / "inc").rglob("*.parquet")
                                       if ".gen" not in p.parts), f"step {step}: the same files"
            assert part_rows > 1000 or any(t.parent.name for t in published), "small parts: some table in parts"
            for t in published:  # a table in parts: each part, linked from before or written, the same bytes
                a, b = (tmp_path / "inc" / t).read_bytes(), (full / t).read_bytes()
                assert hashlib.sha256(a).digest() == hashlib.sha256(b).digest(), f"step {step}: {t}"
            shutil.rmtree(full)
    for name in PROJECTIONS:
        assert "updated" in actions[name], (name, actions[name])


@pytest.mark.skipif(not CORPUS.is_dir(), reason="the shared corpus is absent (a fresh clone)")
def test_incremental_tables_equal_full_builds_on_the_real_corpus(tmp_path: Path) -> None:
    _feed([CORPUS, CODEX], tmp_path, steps=7, seed=3)


def test_incremental_tables_equal_full_builds_on_the_examples(tmp_path: Path) -> None:
    examples = ROOT / "data" / "examples"
    _feed([examples / "claude-projects", examples / "codex-sessions"], tmp_path, steps=6, seed=8)


@pytest.mark.skipif(not CORPUS.is_dir(), reason="the shared corpus is absent (a fresh clone)")
def test_incremental_tables_in_parts_equal_full_builds_on_the_real_corpus(tmp_path: Path) -> None:
    _feed([CORPUS, CODEX], tmp_path, steps=5, seed=5, part_rows=40)


def test_experiment_tables_updated_step_by_step_equal_full_builds(tmp_path: Path) -> None:
    """Stage by stage (prompts, responses, retries, an audit's later parses), every experiment table
    an update made equals a full build of the same log."""
    from experiment_helpers import chronicle, make_workspace

    ws = make_workspace(tmp_path / "ws")
    inc = Engine(tmp_path / "inc", discover())
    steps = [("cohort", "plan", "demo"), ("run", "demo", "--provider", "echo", "--stage", "draft", "--limit", "5"),
             ("run", "demo", "--provider", "echo", "--stage", "draft"), ("run", "demo", "--provider", "echo"),
             ("audit", "reparse", "--parser", "in_last_line", "--stage", "evaluation", "--record")]
    actions = set()
    for n, step in enumerate(steps):
        done = chronicle(*step, root=ws)
        assert done.returncode in (0, 1), (step, done.stderr)
        with EventLog(ws / "data" / "log") as log:
            actions |= {o.action for o in inc.run(log.snapshot(), ["experiments"])}
            full = tmp_path / f"full{n}"
            Engine(full, discover()).run(log.snapshot(), ["experiments"], full=True)
        for t in sorted(p.name for p in full.glob("*.parquet")):
            assert (tmp_path / "inc" / t).read_bytes() == (full / t).read_bytes(), f"after {step}: {t}"
    assert "updated" in actions


def test_a_full_build_batch_by_batch_of_sessions_equals_one_of_everything(tmp_path: Path, monkeypatch) -> None:
    import sys

    from chronicle.projections import _claude, conversations

    sys.path.insert(0, str(ROOT / "bench"))
    import transcripts

    transcripts.generate(tmp_path / "tree", 24)
    with EventLog.init(tmp_path / "log") as log:
        SessionIngester(log, tmp_path / "ingest.lock", quiet_seconds=0).run([tmp_path / "tree"])
        snap = log.snapshot()
        Engine(tmp_path / "whole", discover()).run(snap, ["conversations", "episodes"], full=True)
        monkeypatch.setattr(_claude, "BATCH_BYTES", 4_000_000)  # a few sessions a batch
        lines = snap.frame("session.line")
        batches = _claude.session_batches(lines)
        inputs = {t: snap.frame(t) for t in conversations.INPUTS}
        assert len(batches) > 2 and conversations._by_batches(lines, inputs, batches) is not None
        Engine(tmp_path / "batched", discover()).run(snap, ["conversations", "episodes"], full=True)
    for t in sorted(p.name for p in (tmp_path / "whole").glob("*.parquet")):
        assert (tmp_path / "whole" / t).read_bytes() == (tmp_path / "batched" / t).read_bytes(), t
