"""From sessions to a training set: labels, the review queue, measured quality, projects,
exports and releases, run as a user runs them (the CLI in its own process) on a real git
repository and transcripts whose true links are known, so every figure is checked against
values computed by hand."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import polars as pl
import pytest

from chronicle.ingest.git import ingest_git
from chronicle.ingest.sessions import SessionIngester
from chronicle.projections import _projects
from chronicle.training import quality, review
from chronicle.workspace import Workspace

from conftest import SHARED, run_cli
from test_git import A, B, C, sample_sources
from test_secrets import FAKE

D = "d0000000-0000-4000-8000-00000000000d"
SECRET = FAKE["anthropic-key"]


@pytest.fixture
def sample(tmp_path: Path):
    """The labelled git sample of test_git (sessions A and B work in the repository, C elsewhere),
    and a session D in the repository whose prompt holds an API key and whose second prompt
    reacts to the first ("no, that's wrong": a correction)."""
    repo, projects, shas = sample_sources(tmp_path)
    r = str(repo)
    records = [
        {"type": "user", "sessionId": D, "cwd": r, "uuid": "d-u0", "timestamp": "2026-04-01T09:00:00Z",
         "message": {"role": "user", "content": f"use the key {SECRET} to call the API"}},
        {"type": "assistant", "sessionId": D, "cwd": r, "uuid": "d-a0", "timestamp": "2026-04-01T09:00:05Z",
         "requestId": "rd0", "message": {"id": "md0", "role": "assistant", "model": "claude-sonnet-4-5",
                                          "content": [{"type": "text", "text": "Done."}],
                                          "usage": {"input_tokens": 1, "output_tokens": 1}}},
        {"type": "user", "sessionId": D, "cwd": r, "uuid": "d-u1", "timestamp": "2026-04-01T09:01:00Z",
         "message": {"role": "user", "content": "no, that's wrong"}},
    ]
    (projects / "-repo" / f"{D}.jsonl").write_text("".join(json.dumps(x) + "\n" for x in records))
    ws = Workspace.at(tmp_path / "ws")
    ws.init()
    SessionIngester(ws.open_log(), ws.data / "ingest.lock").run([projects])
    ingest_git(ws.open_log(), repo)
    return ws, repo, shas


def cli(ws: Workspace, *args: str, code: int = 0) -> str:
    done = run_cli(*args, root=ws.root)
    assert done.returncode == code, f"chronicle {' '.join(args)}: exit {done.returncode}: {done.stderr.decode()}"
    return done.stdout.decode() + done.stderr.decode()


def table(ws: Workspace, name: str) -> pl.DataFrame:
    return pl.DataFrame([json.loads(line) for line in cli(ws, "show", name, "--json").splitlines()])


def head(ws: Workspace) -> int:
    return ws.open_log().snapshot().head


def episode_of(ws: Workspace, sid: str, index: int = 0) -> str:
    eps = table(ws, "episodes")
    return eps.filter((pl.col("session_id") == sid) & (pl.col("index") == index))["episode_id"][0]


def test_wilson_interval_matches_the_hand_computed_values() -> None:
    assert quality.wilson(2, 3) == (0.2077, 0.9385)
    assert quality.wilson(0, 1) == (0.0, 0.7935)
    assert quality.wilson(10, 10) == (0.7225, 1.0)
    assert quality.wilson(0, 0) is None


def test_link_precision_and_recall_against_labels(sample) -> None:
    ws, repo, shas = sample
    (ws.root / "chronicle.toml").write_text(f'[projects.app]\nname = "The App"\nroots = ["{repo}"]\n')
    cli(ws, "label", "link", A, shas["c1"][:7], "yes")          # found, right: TP
    cli(ws, "label", "link", B, shas["c2"], "no", "--note", "a hand commit")  # found, wrong: FP
    cli(ws, "label", "link", A, shas["c4"], "yes")              # found, right: TP
    cli(ws, "label", "link", A, shas["c5"], "yes")              # not found: FN
    report = json.loads(cli(ws, "report", "quality", "--json"))
    app = next(p for p in report["projects"] if p["project_id"] == "app")
    assert (app["links"]["tp"], app["links"]["fp"], app["links"]["fn"]) == (2, 1, 1)
    assert app["links"]["precision"] == {"value": 0.6667, "k": 2, "n": 3, "ci95": [0.2077, 0.9385]}
    assert app["links"]["recall"] == {"value": 0.6667, "k": 2, "n": 3, "ci95": [0.2077, 0.9385]}
    assert app["verdict"] == "below bar" and report["bar"] == 0.7 and app["name"] == "The App" and app["tier"] == 1
    assert next(p for p in report["projects"] if p["project_id"] == "elsewhere")["verdict"] == "unmeasured"
    assert report["overall"]["links"]["precision"]["k"] == 2
    lowered = json.loads(cli(ws, "report", "quality", "--json", "--bar", "0.6"))
    assert next(p for p in lowered["projects"] if p["project_id"] == "app")["verdict"] == "included"
    text = cli(ws, "report", "quality")
    assert "0.67 (2/3; 0.21-0.94)" in text and "below bar" in text
    # a later label supersedes: B made c2 after all
    cli(ws, "label", "link", B, shas["c2"], "yes", "--author", "ben")
    again = json.loads(cli(ws, "report", "quality", "--json"))
    app = next(p for p in again["projects"] if p["project_id"] == "app")
    assert app["links"]["precision"]["value"] == 1.0 and app["verdict"] == "included"
    labels = table(ws, "labels").filter(pl.col("target_id") == f"{B}@{shas['c2']}")
    assert labels.select("value", "author", "labels_given").row(0) == ("yes", "ben", 2)
    history = cli(ws, "history", "link", f"{B}@{shas['c2']}")
    assert "2 label(s); standing: link=yes by ben" in history and "a hand commit" in history


def test_reaction_and_action_accuracy_with_confusion_matrices(sample) -> None:
    ws, _, _ = sample
    ep_a, ep_b, ep_d = episode_of(ws, A), episode_of(ws, B), episode_of(ws, D)
    eps = table(ws, "episodes")
    assert eps.filter(pl.col("episode_id") == ep_d)["reaction"][0] == "correct"  # "no, that's wrong"
    cli(ws, "label", "episode", ep_a, "reaction=approve")   # the classifier said none: wrong
    cli(ws, "label", "episode", ep_b, "reaction=none")      # right
    cli(ws, "label", "episode", ep_d, "reaction=correct")   # right
    cli(ws, "label", "action", f"t{A}0", "read")            # an Edit: the classifier says edit
    cli(ws, "label", "action", f"t{A}1", "vcs")             # git commit: vcs, right
    report = json.loads(cli(ws, "report", "quality", "--json"))
    (reaction,) = report["reaction"]
    assert reaction["taxonomy"] == "reaction.v1"
    assert (reaction["accuracy"]["k"], reaction["accuracy"]["n"]) == (2, 3)
    assert reaction["confusion"] == {"approve": {"none": 1}, "correct": {"correct": 1}, "none": {"none": 1}}
    by_project = {p["project_id"]: p["reaction_accuracy"] for p in report["projects"]}
    assert (by_project["repo"]["k"], by_project["repo"]["n"]) == (2, 3) and by_project["elsewhere"]["n"] == 0
    (action,) = report["action"]
    assert action["taxonomy"] == "action.v1" and (action["accuracy"]["k"], action["accuracy"]["n"]) == (1, 2)
    assert action["confusion"] == {"read": {"edit": 1}, "vcs": {"vcs": 1}}
    labels = table(ws, "labels")
    assert set(labels.filter(pl.col("kind") == "episode")["taxonomy"]) == {"reaction.v1"}
    assert set(labels.filter(pl.col("kind") == "action")["taxonomy"]) == {"action.v1"}


def test_bad_labels_are_refused_by_name_and_write_nothing(sample, tmp_path: Path) -> None:
    ws, _, shas = sample
    ep = episode_of(ws, A)
    before = head(ws)
    cases = [
        (("label", "episode", "ep-nope", "reaction=approve"), "no episode 'ep-nope'"),
        (("label", "episode", ep, "reaction=delighted"), "'delighted' is not in taxonomy reaction.v1"),
        (("label", "episode", ep, "mood=approve"), "is not reaction=LABEL"),
        (("label", "action", "toolu_nope", "read"), "no tool call 'toolu_nope'"),
        (("label", "action", f"t{A}0", "inspect.read"), "'inspect.read' is not in taxonomy action.v1"),
        (("label", "link", A, "deadbeefdead", "yes"), "no commit 'deadbeefdead'"),
        (("label", "link", A, shas["c1"][:4], "yes"), "at least 7 characters"),
        (("label", "link", "ffffffff", shas["c1"], "yes"), "no session 'ffffffff'"),
        (("label", "link", A, shas["c1"], "maybe"), "'maybe' is not in a link label"),
    ]
    for args, says in cases:
        out = cli(ws, *args, code=2)
        assert says in out, (args, out)
    bad = tmp_path / "answers.jsonl"
    good = json.dumps({"kind": "episode", "id": ep, "label": "approve"})
    for lines, says in [
        ([good, "{not json"], f"{bad}:2: not a JSON object"),
        ([good, json.dumps({"id": ep, "label": "approve"})], f"{bad}:2: Object missing required field `kind`"),
        ([good, "", json.dumps({"kind": "episode", "id": ep, "label": "thrilled"})], f"{bad}:3: 'thrilled'"),
        ([json.dumps({"kind": "commit", "id": "x", "label": "yes"})], f"{bad}:1: unknown kind 'commit'"),
    ]:
        bad.write_text("\n".join(lines) + "\n")
        out = cli(ws, "label", "import", str(bad), code=2)
        assert says in out, out
    assert "cannot be read" in cli(ws, "label", "import", str(tmp_path / "missing.jsonl"), code=2)
    assert head(ws) == before, "nothing written"
    assert table(ws, "labels").height == 0


def test_review_queue_round_trip_through_a_labelling_tool(sample, tmp_path: Path) -> None:
    ws, _, shas = sample
    ep_a = episode_of(ws, A)
    cli(ws, "label", "episode", ep_a, "reaction=approve")  # disagrees with the classifier (none)
    lines = cli(ws, "review", "--json", "--below", "0.9").splitlines()
    items = [json.loads(line) for line in lines if line.startswith("{")]
    assert items[0]["kind"] == "episode" and items[0]["id"] == ep_a and items[0]["disagreement"]
    assert items[0]["labeled"] == "approve" and items[0]["label"] is None
    ids = {(i["kind"], i["id"]) for i in items}
    assert ("link", f"{B}@{shas['c2']}") in ids  # 0.8 (commit_command) < 0.9
    assert ("link", f"{A}@{shas['c1']}") not in ids  # 1.0
    assert all(SECRET not in line for line in lines), "the queue masks secrets"
    answered = tmp_path / "queue.jsonl"
    for item in items:
        item["label"] = {"link": "yes", "episode": "none"}.get(item["kind"])
    items[-1]["label"] = None  # one left unanswered
    answered.write_text("".join(json.dumps(i) + "\n" for i in items))
    said = cli(ws, "label", "import", str(answered), "--author", "labeller")
    assert f"{len(items) - 1} labels ({len(items) - 1} new, 0 imported before), 1 lines unanswered" in said
    assert "0 new" in cli(ws, "label", "import", str(answered), "--author", "labeller")
    labels = table(ws, "labels")
    assert labels.filter(pl.col("target_id") == ep_a).select("value", "author").row(0) == ("none", "labeller")
    assert "nothing to review" not in cli(ws, "review")


def test_the_queue_gives_every_project_a_turn() -> None:
    empty = {"session_id": pl.String, "repo": pl.String, "sha": pl.String, "method": pl.String,
             "confidence": pl.Float64, "evidence": pl.String}
    eps = pl.DataFrame({"episode_id": [f"e{i}" for i in range(9)],
                        "session_id": ["big"] * 7 + ["small1", "small2"],
                        "prompt": ["p"] * 9, "reaction_text": ["r"] * 9, "reaction": ["unknown"] * 9,
                        "reaction_confidence": [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.05, 0.3]})
    tables = {"episodes": eps, "session_commits": pl.DataFrame(schema=empty),
              "labels": pl.DataFrame(schema={"kind": pl.String, "target_id": pl.String, "key": pl.String,
                                             "value": pl.String, "author": pl.String}),
              "session_projects": pl.DataFrame({"session_id": ["big", "small1", "small2"], "project_id": ["b", "s", "s"]}),
              "sessions": pl.DataFrame({"session_id": ["big"], "title": ["t"]}),
              "commits": pl.DataFrame(schema={"sha": pl.String, "subject": pl.String})}
    queue = review.queue(tables, 0.7, kinds=("episode",), limit=4)
    assert [(i["project"], i["id"]) for i in queue] == [("b", "e0"), ("s", "e7"), ("b", "e1"), ("s", "e8")]
    capped = review.queue(tables, 0.7, kinds=("episode",), limit=None, per_project=2)
    assert [i["id"] for i in capped] == ["e0", "e7", "e1", "e8"]


def test_projects_tiers_and_the_registry_as_events(sample) -> None:
    ws, repo, _ = sample
    projects = table(ws, "projects")
    inferred = projects.filter(pl.col("project_id") == "repo").row(0, named=True)
    assert inferred["roots"] == [str(repo)] and inferred["tier"] == 1 and not inferred["configured"]
    assert inferred["sessions"] == 3 and inferred["commits"] == 5 and inferred["linked_commits"] == 3
    assert projects.filter(pl.col("project_id") == "elsewhere")["tier"][0] == 3
    before = head(ws)
    (ws.root / "chronicle.toml").write_text(f'[projects.app]\nname = "The App"\nroots = ["{repo}"]\nstatus = "paused"\n')
    projects = table(ws, "projects")
    assert head(ws) == before + 1  # the section, recorded once
    table(ws, "projects")
    assert head(ws) == before + 1
    app = projects.filter(pl.col("project_id") == "app").row(0, named=True)
    assert (app["name"], app["status"], app["configured"], app["tier"]) == ("The App", "paused", True, 1)
    assert "repo" not in projects["project_id"].to_list()
    membership = dict(table(ws, "session_projects").iter_rows())
    assert membership == {A: "app", B: "app", C: "elsewhere", D: "app"}
    # as of a seq before the section was recorded, the projects are as they were
    out = cli(ws, "replay", "--as-of", str(before), "conversations", "--json")
    replayed = pl.read_parquet(Path(json.loads(out.splitlines()[0])["out"]) / "projects.parquet")
    assert "repo" in replayed["project_id"].to_list() and "app" not in replayed["project_id"].to_list()


def test_tiers_follow_what_the_commits_say() -> None:
    sessions = pl.DataFrame({"session_id": [A, "s2"], "project": ["/r1/src", "/r2"],
                             "first_time": [None, None], "last_time": [None, None]},
                            schema_overrides={"first_time": pl.Datetime("us", "UTC"), "last_time": pl.Datetime("us", "UTC")})
    commits = pl.DataFrame({"repo": ["/r1", "/r2", "/r3"], "sha": ["a", "b", "c"],
                            "message": [f"x\n\nClaude-Session: {A}", "y\n\nCo-Authored-By: Claude <noreply@anthropic.com>",
                                        "z"], "committed_at": [None, None, None]},
                           schema_overrides={"committed_at": pl.Datetime("us", "UTC")})
    links = pl.DataFrame(schema={"session_id": pl.String, "repo": pl.String, "sha": pl.String})
    made = _projects.tables(sessions, commits, links, {"r3": {"name": "Three", "roots": ["/r3"], "repos": [], "status": "active"}})
    tiers = dict(made["projects"].select("project_id", "tier").iter_rows())
    assert tiers == {"r1": 1, "r2": 2, "r3": 3}
    assert dict(made["session_projects"].iter_rows()) == {A: "r1", "s2": "r2"}


def _datasets(tmp_path: Path):
    """Hugging Face ``datasets``, offline, caching under ``tmp_path`` (skips where it is not installed)."""
    import os

    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_HOME", str(tmp_path / "hf"))
    return pytest.importorskip("datasets")


def _digests(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_export_episodes_splits_filters_masks_and_loads_in_datasets(sample, tmp_path: Path) -> None:
    datasets = _datasets(tmp_path)
    ws, repo, _ = sample
    ep_d = episode_of(ws, D)
    cli(ws, "label", "episode", ep_d, "reaction=correct", "--author", "ana")
    cli(ws, "label", "action", f"t{A}0", "read")
    a, b = tmp_path / "a", tmp_path / "b"
    cli(ws, "export", "episodes", str(a), "--split", "random:0.5:7")
    cli(ws, "export", "episodes", str(b), "--split", "random:0.5:7")
    assert _digests(a) == _digests(b), "the same checkpoint and options give the same bytes"
    total = table(ws, "episodes").height
    splits = {p.stem: pl.read_parquet(p) for p in (a / "data").glob("*.parquet")}
    assert set(splits) == {"train", "test"} and sum(s.height for s in splits.values()) == total
    everything = pl.concat(splits.values())
    d = everything.filter(pl.col("episode_id") == ep_d).row(0, named=True)
    assert d["reaction"]["label"] == "correct" and d["reaction"]["label_author"] == "ana"
    assert d["reaction"]["predicted"] == "correct" and d["project_id"] == "repo"
    assert "[secret:anthropic-key]" in d["observation"]["prompt"]
    first_a = everything.filter(pl.col("session_id") == A).row(0, named=True)
    assert first_a["action"]["classes"] == ["edit", "vcs"] and first_a["action"]["class_labels"] == ["read", None]
    for path in a.rglob("*"):
        assert not path.is_file() or SECRET.encode() not in path.read_bytes(), path
    card = (a / "README.md").read_text()
    seq = head(ws)
    assert f"seq {seq}" in card and "reaction.v1" in card and "| test |" in card and "`observation`" in card
    loaded = datasets.load_dataset("parquet", data_files={s: str(a / "data" / f"{s}.parquet") for s in splits},
                                   cache_dir=str(tmp_path / "hf-cache"))
    assert {s: loaded[s].num_rows for s in loaded} == {s: df.height for s, df in splits.items()}
    assert loaded["train"].features["reaction"]["label"].dtype in ("string", "large_string")
    by_card = datasets.load_dataset(str(a), cache_dir=str(tmp_path / "hf-cache"))  # the card names the split files
    assert {s: by_card[s].num_rows for s in by_card} == {s: df.height for s, df in splits.items()}
    # options
    lab = tmp_path / "labelled"
    cli(ws, "export", "episodes", str(lab), "--labeled-only", "--format", "jsonl")
    rows = [json.loads(x) for x in (lab / "data" / "train.jsonl").read_text().splitlines()]
    assert sorted(r["session_id"] for r in rows) == sorted([A, D])
    per_project = tmp_path / "per-project"
    cli(ws, "export", "episodes", str(per_project), "--split", "project")
    assert sorted(p.name for p in (per_project / "data").iterdir()) == ["elsewhere.parquet", "repo.parquet"]
    by_time = tmp_path / "by-time"
    cli(ws, "export", "episodes", str(by_time), "--split", "time:2026-03-15")
    assert pl.read_parquet(by_time / "data" / "test.parquet")["session_id"].to_list() == [D, D]
    only = tmp_path / "only"
    cli(ws, "export", "episodes", str(only), "--projects", "elsewhere", "--min-confidence", "0.5")
    assert pl.read_parquet(only / "data" / "train.parquet")["session_id"].to_list() == [C]
    assert "no project 'nope'" in cli(ws, "export", "episodes", str(tmp_path / "x"), "--projects", "nope", code=2)
    assert "not an empty folder" in cli(ws, "export", "episodes", str(a), code=2)
    assert "random:FRACTION:SEED" in cli(ws, "export", "episodes", str(tmp_path / "y"), "--split", "random:2:1", code=2)
    # a project marked excluded is left out unless named
    (ws.root / "chronicle.toml").write_text(f'[projects.app]\nroots = ["{repo}"]\nstatus = "excluded"\n')
    dropped = tmp_path / "dropped"
    cli(ws, "export", "episodes", str(dropped))
    assert set(pl.read_parquet(dropped / "data" / "train.parquet")["session_id"]) == {C}


def test_a_release_is_frozen_verified_from_the_log_and_never_overwritten(sample) -> None:
    ws, _, _ = sample
    cli(ws, "label", "episode", episode_of(ws, D), "reaction=correct")
    said = json.loads(cli(ws, "release", "v1", "--split", "random:0.3:1", "--json").splitlines()[0])
    folder = ws.data / "releases" / "v1"
    assert said["files"] == {p: hashlib.sha256((folder / p).read_bytes()).hexdigest() for p in said["files"]}
    assert set(said["files"]) >= {"README.md", "data/train.parquet"}
    assert "exists already" in cli(ws, "release", "v1", code=2)
    # the log grows, tables change: the release still rebuilds byte for byte as of its checkpoint
    cli(ws, "label", "episode", episode_of(ws, A), "reaction=approve")
    verified = json.loads(cli(ws, "release", "verify", "v1", "--json").splitlines()[0])
    assert verified["ok"] and verified["seq"] == said["seq"] and set(verified["files"].values()) == {"ok"}
    listed = [json.loads(x) for x in cli(ws, "release", "list", "--json").splitlines() if x.startswith("{")]
    assert [(r["name"], r["at_seq"]) for r in listed] == [("v1", said["seq"])]
    train = folder / "data" / "train.parquet"
    train.write_bytes(train.read_bytes()[:-10])
    out = cli(ws, "release", "verify", "v1", code=1)
    assert "altered  data/train.parquet" in out and "FAILED" in out
    assert "no release named 'v9'" in cli(ws, "release", "verify", "v9", code=2)
    assert "letters, digits" in cli(ws, "release", "../escape", code=2)
    history = cli(ws, "log", "--type", "release.frozen", "--json")
    assert '"name":"v1"' in history


@pytest.mark.skipif(not (SHARED / "corpus" / "claude-code").is_dir(), reason="../shared/corpus is absent")
def test_the_real_corpus_exports_every_episode(tmp_path: Path) -> None:
    datasets = _datasets(tmp_path)
    ws = Workspace.at(tmp_path / "ws")
    ws.init()
    shutil.copytree(SHARED / "corpus" / "claude-code", tmp_path / "corpus", dirs_exist_ok=True)
    cli(ws, "ingest", "sessions", str(tmp_path / "corpus"))
    episodes = table(ws, "episodes")
    projects = table(ws, "projects")
    assert projects["sessions"].sum() == table(ws, "session_projects").height
    out = tmp_path / "export"
    cli(ws, "export", "episodes", str(out), "--split", "project")
    loaded = datasets.load_dataset(str(out), cache_dir=str(tmp_path / "hf-cache"))
    assert sum(loaded[s].num_rows for s in loaded) == episodes.height > 0
    assert len(loaded) == episodes.join(table(ws, "session_projects"), on="session_id")["project_id"].n_unique()
