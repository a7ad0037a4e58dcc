"""Training-set export against DuckDB, side by side, on the replicated real transcripts.

The corpus: the shared real Claude Code transcripts replicated with every id varied
(``replicate.py``). After ingest and a rebuild, with a few hundred labels given:

- ``chronicle export episodes DIR`` (nested observation/action/reaction columns,
  labels joined, text masked, a dataset card, one file per split) against the query
  a user would otherwise write: a Python process running DuckDB, reading
  ``data/tables/episodes.parquet`` and ``session_projects.parquet`` and writing the same
  nested shape with ``COPY ... TO`` (no masking, no labels, no card: less work than
  chronicle does);
- ``chronicle review --json`` and ``chronicle report quality --json`` (each a process);
- ``chronicle release verify`` (a full rebuild of the tables it reads, as of the
  release's checkpoint, then the export again) against ``chronicle rebuild --full``
  of the same projections.

Every figure is a median over rounds in which the contenders take turns.

    python bench/training.py [--copies 160] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import replicate  # noqa: E402

RESULTS = Path(__file__).with_name("results")


def chronicle(ws: Path, *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "chronicle", "--root", str(ws), *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"chronicle {' '.join(args)}: {done.stderr[-500:]}")
    return done.stdout


def timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


DUCKDB_EXPORT = """
COPY (
  SELECT e.episode_id, e.session_id, p.project_id, e."index", e.prompt_time,
         struct_pack(prompt := e.prompt, context := e.context_json, files_touched := e.files_touched,
                     last_test_status := e.last_test_status, compacted := e.compacted) AS observation,
         struct_pack(tool_calls := e.tool_calls, tool_call_ids := e.action_ids, classes := e.actions,
                     tool_errors := e.tool_errors, text := e.action_text, subagents := e.subagents,
                     taxonomy := e.action_taxonomy) AS action,
         struct_pack(text := e.reaction_text, predicted := e.reaction, confidence := e.reaction_confidence,
                     taxonomy := e.reaction_taxonomy) AS reaction
  FROM read_parquet('{tables}/episodes.parquet') e
  LEFT JOIN read_parquet('{tables}/session_projects.parquet') p USING (session_id)
  ORDER BY e.session_id, e."index"
) TO '{out}' (FORMAT PARQUET, COMPRESSION ZSTD)
"""


def run(copies: int, rounds: int) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="chronicle-training-"))
    try:
        tree = tmp / "projects"
        replicate.replicate(tree, copies)
        ws = tmp / "ws"
        chronicle(ws, "init")
        chronicle(ws, "ingest", "sessions", str(tree))
        chronicle(ws, "rebuild")
        episodes = [json.loads(x) for x in chronicle(ws, "show", "episodes", "--json", "--columns",
                                                    "episode_id,reaction").splitlines()]
        answers = tmp / "answers.jsonl"
        answers.write_text("".join(json.dumps({"kind": "episode", "id": e["episode_id"], "label": e["reaction"]}) + "\n"
                                   for e in episodes[::max(1, len(episodes) // 300)]))
        chronicle(ws, "label", "import", str(answers))
        chronicle(ws, "rebuild")
        tables = ws / "data" / "tables"
        times: dict[str, list[float]] = {"chronicle_export": [], "duckdb_export": [], "review": [], "quality": []}
        for r in range(rounds):
            out = tmp / f"export-{r}"
            dd = tmp / f"duckdb-{r}.parquet"
            script = f"import duckdb; duckdb.connect().execute({DUCKDB_EXPORT.format(tables=tables, out=dd)!r})"
            steps = [("chronicle_export", lambda: chronicle(ws, "export", "episodes", str(out))),
                     ("duckdb_export", lambda: subprocess.run([sys.executable, "-c", script], check=True))]
            for name, fn in steps[r % 2:] + steps[: r % 2]:
                times[name].append(timed(fn))
            times["review"].append(timed(lambda: chronicle(ws, "review", "--json", "--limit", "0")))
            times["quality"].append(timed(lambda: chronicle(ws, "report", "quality", "--json")))
            shutil.rmtree(out, ignore_errors=True)
        chronicle(ws, "release", "bench")
        verify = [timed(lambda: chronicle(ws, "release", "verify", "bench")) for _ in range(rounds)]
        rebuild = [timed(lambda: chronicle(ws, "rebuild", "--full", "conversations", "episodes", "labels"))
                   for _ in range(rounds)]
        med = {k: statistics.median(v) for k, v in times.items()}
        return {"copies": copies, "corpus_mb": sum(p.stat().st_size for p in tree.rglob("*.jsonl")) / 1e6,
                "episodes": len(episodes), "rounds": rounds, **{f"{k}_s": v for k, v in med.items()},
                "export_ratio_vs_duckdb": med["chronicle_export"] / med["duckdb_export"],
                "release_verify_s": statistics.median(verify), "rebuild_full_s": statistics.median(rebuild),
                "verify_ratio_vs_rebuild": statistics.median(verify) / statistics.median(rebuild)}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def report(result: dict) -> None:
    print(f"{result['episodes']:,} episodes from {result['corpus_mb']:.0f} MB of transcripts")
    print(f"export episodes: {result['chronicle_export_s']:.2f} s; DuckDB COPY of the same shape "
          f"{result['duckdb_export_s']:.2f} s (a process): {result['export_ratio_vs_duckdb']:.2f}x (chronicle also masks, "
          "joins labels, writes the card)")
    print(f"review --json: {result['review_s']:.2f} s; report quality: {result['quality_s']:.2f} s")
    print(f"release verify: {result['release_verify_s']:.2f} s; rebuild --full of its projections "
          f"{result['rebuild_full_s']:.2f} s: {result['verify_ratio_vs_rebuild']:.2f}x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--copies", type=int, default=160, help="copies of the real transcripts (160: about 175 MB)")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    result = run(args.copies, args.rounds)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "training.json").write_text(json.dumps(result, indent=1) + "\n")
    report(result)


if __name__ == "__main__":
    main()
