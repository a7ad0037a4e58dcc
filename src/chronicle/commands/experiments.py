"""`chronicle ingest definitions`, `chronicle ingest legacy`, `chronicle cohort plan`, `chronicle run` and `chronicle parse`."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

from typing import TYPE_CHECKING

# Light at import: the command line imports this module for every verb. What a
# verb needs (the runner and aiohttp, Polars, the store) is imported when it runs.
from chronicle.experiment import parsers
from chronicle.commands.output import print_json
from chronicle.commands.sessions import INGEST_EXAMPLE, INGEST_HELP
from chronicle.commands.verbs import Verbs
from chronicle.errors import EXIT_FAILED, EXIT_OK, EXIT_USAGE, UsageError
from chronicle.progress import Progress
from chronicle.workspace import Workspace

if TYPE_CHECKING:
    from chronicle.experiment.runner import RunSummary




def _definitions_folder(ws: Workspace, given: str | None) -> Path:
    return Path(given) if given else ws.data / "1_raw"


# ---------------------------------------------------------------- ingest definitions

def cmd_ingest_definitions(ws: Workspace, args: argparse.Namespace) -> int:
    from chronicle.ingest.definition_snapshots import ingest_definitions

    report = ingest_definitions(ws.open_log(), _definitions_folder(ws, args.source))
    d = report.definitions
    assert d is not None
    if args.json:
        print_json({"added": report.added, "changed": report.changed, "removed": report.removed,
                     "unchanged": report.unchanged, "problems": [vars(p) for p in d.problems]})
    else:
        for p in d.problems:
            print(f"  {p}", file=sys.stderr)
        print(f"definitions: {len(report.added)} added, {len(report.changed)} changed, {len(report.removed)} removed, "
              f"{report.unchanged} unchanged; {len(d.concepts)} concepts, {len(d.templates)} templates, "
              f"{len(d.models)} models; {len(d.errors)} errors, {len(d.problems) - len(d.errors)} warnings")
    return EXIT_FAILED if d.errors else EXIT_OK


# ---------------------------------------------------------------- ingest legacy

def cmd_ingest_legacy(ws: Workspace, args: argparse.Namespace) -> int:
    from chronicle.ingest import legacy

    path = Path(args.path).expanduser()
    try:
        root = legacy.data_root(path.resolve())
    except legacy.LegacyError as exc:
        raise UsageError(str(exc)) from None
    docs, _ = legacy.scan(root)  # for the bar's total; the import scans again (the source may move under it)
    bar = Progress(len(docs), "legacy", " docs")
    try:
        report = legacy.import_legacy(ws.open_log(), root, on_progress=bar.advance)
    finally:
        bar.close()
    if args.json:
        print_json(vars(report))
    else:
        for p in report.problems:
            print(f"  {p}", file=sys.stderr)
        stages = ", ".join(f"{n} {s}" for s, n in sorted(report.by_stage.items())) or "none"
        print(f"legacy {report.root}: {report.documents} documents; imported {report.imported} ({stages}), "
              f"{report.unchanged} already imported; {len(report.problems)} problems")
    return EXIT_OK


# ---------------------------------------------------------------- cohorts

def cmd_cohort_plan(ws: Workspace, args: argparse.Namespace) -> int:
    from chronicle.experiment import cohorts
    from chronicle.ingest.cohort_plans import plan_cohort

    try:
        plan, _ = plan_cohort(ws, args.cohort_id, record=True)
    except cohorts.CohortError as exc:
        raise UsageError(str(exc)) from None
    calls = plan.calls()
    by_stage: dict[str, int] = {}
    for m in plan.members:
        by_stage[m.stage] = by_stage.get(m.stage, 0) + 1
    if args.json:
        print_json({"cohort_id": plan.cohort_id, "members": by_stage,
                     "calls": [{"stage": s, "model_id": mid, "calls": n} for (s, mid), n in sorted(calls.items())]})
        return EXIT_OK
    print(f"cohort {plan.cohort_id}: {len(plan.members)} documents "
          + ", ".join(f"{n} {s}" for s, n in by_stage.items()))
    print(f"{'stage':<12}{'model':<28}{'calls':>8}")
    for (stage, mid), n in sorted(calls.items()):
        print(f"{stage:<12}{mid:<28}{n:>8}")
    print(f"{'total':<40}{sum(calls.values()):>8}  (first attempts; retries add to this)")
    return EXIT_OK


# ---------------------------------------------------------------- run

class _RunBar:
    """done / failed / in flight, tokens and ETA; the total comes from the run's own plan."""

    def __init__(self) -> None:
        self.bar = Progress(1, "run", " calls")

    def __call__(self, s: RunSummary, inflight: int) -> None:
        done = s.ok + s.failed
        self.bar.total = max(s.planned, 1)
        self.bar.done = done
        rate = done / max(time.monotonic() - self.bar.started, 1e-9)
        eta = (self.bar.total - done) / rate if rate > 0 else 0
        self.bar.advance(0, f"ok {s.ok} failed {s.failed} in flight {inflight} "
                            f"tok {s.prompt_tokens + s.completion_tokens:,} eta {eta:,.0f}s")


def cmd_run(ws: Workspace, args: argparse.Namespace) -> int:
    from chronicle.experiment import cohorts, providers
    from chronicle.experiment.runner import RunOptions, Runner
    from chronicle.ingest.cohort_plans import plan_cohort
    from chronicle.store.fsutil import locked

    name = args.provider or ws.config.run.provider
    if not name:
        raise UsageError("choose a provider with --provider NAME (echo is offline and free; "
                         "or set [run] provider in chronicle.toml)")
    provider = providers.get(ws.config, name)
    if args.concurrency is not None and args.concurrency < 1:
        raise UsageError("--concurrency must be at least 1")
    options = RunOptions(stage=args.stage, limit=args.limit, retry_errors=args.retry_errors, dry_run=args.dry_run,
                         concurrency=args.concurrency, shard=_shard(args.shard))
    try:
        plan, d = plan_cohort(ws, args.cohort, record=not args.dry_run)
    except cohorts.CohortError as exc:
        raise UsageError(str(exc)) from None
    log = ws.open_log()
    pulled = _pulled_logs(ws)  # what other producers did (chronicle pull) is done here too
    if args.dry_run:
        summary = Runner(log, plan, d, provider, options, pulled=pulled).dry_run()
        _report(summary, args, dry=True)
        return EXIT_OK
    # One run of a cohort at a time: two would race to give a key two ok responses.
    with locked(ws.data / "cohorts" / f".{args.cohort}.run.lock"):
        bar = _RunBar()
        runner = Runner(log, plan, d, provider, options, on_progress=bar, pulled=pulled)
        try:
            summary = asyncio.run(runner.run())
        finally:
            bar.bar.close()
    from chronicle.secrets.scan import scan

    found = scan(log, ws.data).findings  # prompts and responses are scanned before the verb returns
    if found and not args.json:
        print(f"  {found} secrets found in the prompts and responses recorded (`chronicle secrets list`)",
              file=sys.stderr)
    _report(summary, args, dry=False)
    return EXIT_FAILED if summary.failed else EXIT_OK


def _shard(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    i, _, n = text.partition("/")
    if not (i.isdigit() and n.isdigit()) or not 0 <= int(i) < int(n):
        raise UsageError(f"--shard {text!r}: give I/N with 0 <= I < N (this machine's share of N)")
    return int(i), int(n)


def _pulled_logs(ws: Workspace) -> list:
    from chronicle.remote import mirrors
    from chronicle.store import EventLog

    return [EventLog(folder) for _, _, folder in mirrors(ws.data)]


def _report(s: RunSummary, args: argparse.Namespace, *, dry: bool) -> None:
    if args.json:
        print_json({"dry_run": dry, **vars(s)})
        return
    todo = ", ".join(f"{n} {stage}" for stage, n in s.to_do.items()) or "nothing"
    if dry:
        print(f"dry run ({s.provider}): would take on {todo}; {s.already_done} already done, {s.blocked} waiting "
              f"for their parent, {s.left_failed} failed earlier (use --retry-errors)")
        return
    if not s.run_id:
        print(f"nothing to do ({s.provider}): {s.already_done} already done, {s.blocked} waiting for their parent, "
              f"{s.left_failed} failed earlier (use --retry-errors)"
              + (f", {s.other_shards} for other shards" if s.other_shards else ""))
        return
    print(f"run {s.run_id} ({s.provider}): took on {todo}; {s.ok} ok, {s.failed} failed, {s.calls} calls, "
          f"{s.prompt_tokens:,} prompt + {s.completion_tokens:,} completion tokens in {s.seconds:.1f}s; "
          f"{s.already_done} already done, {s.blocked} waiting for their parent, {s.left_failed} failed earlier"
          + (f", {s.other_shards} for other shards" if s.other_shards else ""))
    for cause, n in sorted(s.causes.items(), key=lambda c: (-c[1], c[0])):
        print(f"  failed: {n} x {cause}")
    if s.causes:
        print("  (every attempt is recorded: chronicle show documents --where \"status != 'ok'\"; retry those keys with --retry-errors)")


# ---------------------------------------------------------------- parse

def cmd_parse(ws: Workspace, args: argparse.Namespace) -> int:
    try:
        parser = parsers.get(args.parser)
    except parsers.UnknownParser as exc:
        raise UsageError(str(exc)) from None
    worst = EXIT_OK
    for name in args.files:
        try:
            text = Path(name).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            print(f"chronicle parse: error: {name}: {exc}", file=sys.stderr)  # the other files go on
            worst = EXIT_USAGE
            continue
        r = parser(text)
        row = {"file": name, "parser": parser.name, "parser_version": parser.version, "status": r.status,
               "score": r.score, "scale": r.scale, "parsed": r.parsed, "reason": r.reason}
        if args.json:
            print_json(row)
        else:
            value = (f"{r.score:g}" + (f"/{r.scale:g}" if r.scale else "")) if r.score is not None else (
                (r.parsed or "")[:60].replace("\n", " "))
            print(f"{name}\t{r.status}\t{value}" + (f"\t({r.reason})" if r.reason else ""))
        if r.status != "ok" and worst == EXIT_OK:
            worst = EXIT_FAILED
    return worst


# ---------------------------------------------------------------- docs

def cmd_docs(ws: Workspace, args: argparse.Namespace) -> int:
    from chronicle.docs_tree import materialize

    target = Path(args.out) if args.out else ws.data / "docs"
    from chronicle.secrets.mask import Masker

    report = materialize(ws.open_log().snapshot(), target, prune=not args.out or args.prune, masker=Masker.of(ws))
    if args.json:
        print_json({"dir": str(target), **vars(report)})
    else:
        for r in report.refused:
            print(f"  refused unsafe document path {r!r}", file=sys.stderr)
        print(f"docs in {target}: {report.written} files written, {report.unchanged} unchanged, "
              f"{report.removed} stale documents removed")
    return EXIT_FAILED if report.refused else EXIT_OK


# ---------------------------------------------------------------- audit

def cmd_audit_reparse(ws: Workspace, args: argparse.Namespace) -> int:
    from chronicle import audit

    try:
        report = audit.reparse(ws.open_log(), args.parser, args.stage, record=args.record)
    except parsers.UnknownParser as exc:
        raise UsageError(str(exc)) from None
    if args.json:
        print_json(vars(report))
    else:
        for d in report.disagreements[:50]:
            if "recorded" in d:
                r, n = d["recorded"], d["now"]
                print(f"  {d['doc_id']} ({d['stage']}): recorded {r['parser']} {r['status']} {r['score']}/{r['scale']} "
                      f"-> now {n['parser']} {n['status']} {n['score']}/{n['scale']}"
                      + (f" ({n['reason']})" if n["reason"] else ""))
            else:
                print(f"  {d['doc_id']}: {d['why']}")
        if len(report.disagreements) > 50:
            print(f"  ... and {len(report.disagreements) - 50} more (--json for all)")
        if report.scale_only:
            scales = {(d["recorded"]["scale"], d["now"]["scale"]) for d in report.scale_only}
            said = ", ".join(f"{a if a is not None else 'none'} -> {b if b is not None else 'none'}"
                             for a, b in sorted(scales, key=str))
            print(f"  {len(report.scale_only)} agree on the score and differ only in its scale ({said})")
        print(f"reparse: {report.checked} responses checked, {report.agree} agree, "
              f"{len(report.disagreements)} disagree, {len(report.scale_only)} differ only in scale"
              + (f"; {report.recorded} new parse results recorded" if args.record else ""))
    return EXIT_FAILED if report.disagreements and not args.record else EXIT_OK


def cmd_audit_prompt(ws: Workspace, args: argparse.Namespace) -> int:
    from chronicle import audit

    try:
        from chronicle.id_lookup import doc_id

        snap = ws.open_log().snapshot()
        result = audit.reprompt(snap, doc_id(snap, args.doc_id))
    except audit.AuditError as exc:
        raise UsageError(str(exc)) from None
    if args.json:
        print_json(vars(result))
    elif result.rendered_sha256 is None:
        print(f"{result.doc_id}: cannot re-render the prompt: {result.detail}")
    else:
        verdict = "matches" if result.match else "DOES NOT MATCH"
        print(f"{result.doc_id}: re-rendered prompt {verdict} the recorded hash {result.recorded_sha256[:16]}"
              + ("" if result.template_match else " (the recorded template's hash differs)"))
        if result.detail:
            print(result.detail)
    return EXIT_OK if result.match else EXIT_FAILED


def register(verbs: Verbs) -> None:
    verbs.group("ingest", INGEST_HELP, INGEST_EXAMPLE)
    p = verbs.add("definitions", cmd_ingest_definitions,
                  "experiment definitions (data/1_raw): one definitions.snapshot per changed file; problems named by "
                  "file and line", "chronicle ingest definitions --from ../corpus/daydreaming/1_raw", under="ingest")
    p.add_argument("--from", dest="source", metavar="DIR", help="definitions folder (default: data/1_raw)")
    p = verbs.add("legacy", cmd_ingest_legacy,
                  "a DayDreaming data directory (gens/ store, older 3_generation/ and 4_evaluation/ folders), read-only: "
                  "one attempt per raw version, old ids kept, provenance in legacy.source; re-running adds nothing",
                  "chronicle ingest legacy ~/DayDreamingDayDreaming/data --json", under="ingest")
    p.add_argument("path", metavar="PATH", help="the data directory, or the project folder holding it as data/")
    verbs.group("cohort", "cohort specs (data/cohorts/ID/cohort.toml)", "chronicle cohort plan demo")
    p = verbs.add("plan", cmd_cohort_plan, "expand a cohort spec into its membership, record it, print the calls it needs",
                  "chronicle cohort plan demo --json", under="cohort")
    p.add_argument("cohort_id", metavar="ID")
    p = verbs.add("run", cmd_run, "run a cohort: draft -> essay -> evaluation; resumes where the log says it stopped",
                  "chronicle run demo --provider echo --concurrency 16")
    p.add_argument("cohort", metavar="COHORT")
    p.add_argument("--provider", metavar="NAME", help="echo, local, or a [providers.NAME] in chronicle.toml")
    p.add_argument("--concurrency", type=int, metavar="N", help="calls in flight (default: the provider's)")
    p.add_argument("--stage", choices=["draft", "essay", "evaluation"], help="only this stage")
    p.add_argument("--limit", type=int, metavar="N", help="take on at most N logical keys")
    p.add_argument("--retry-errors", action="store_true", help="retry only the keys whose last attempt failed")
    p.add_argument("--dry-run", action="store_true", help="say what would be called; record nothing")
    p.add_argument("--shard", metavar="I/N", help="take on only shard I of N (N machines run one cohort; each key "
                                                   "goes to one; what others did counts once pulled)")
    verbs.group("audit", "check recorded results against today's code (no model is called)",
                "chronicle audit reparse --parser score --stage evaluation")
    p = verbs.add("reparse", cmd_audit_reparse, "run today's parsers over recorded responses; report (dis)agreement",
                  "chronicle audit reparse --parser score --stage evaluation --record", under="audit")
    p.add_argument("--parser", metavar="NAME", help="parse with this parser (default: the one each result names)")
    p.add_argument("--stage", choices=["draft", "essay", "evaluation"])
    p.add_argument("--record", action="store_true",
                   help="append the differing results as new parse.result events (provenance audit:reparse)")
    p = verbs.add("prompt", cmd_audit_prompt, "re-render a document's prompt from the recorded definitions; compare hashes",
                  "chronicle audit prompt v_a3lmlopwpq6ighgfq", under="audit")
    p.add_argument("doc_id", metavar="DOC_ID", help="the doc id, a unique prefix of it, or DayDreaming's task id")
    p = verbs.add("docs", cmd_docs, "write every document as files: data/docs/<stage>/<doc_id>/{prompt,raw,parsed}.txt "
                  "and metadata.json (a projection: delete it and run again)", "chronicle docs")
    p.add_argument("--out", metavar="DIR", help="write elsewhere (default: data/docs, where stale documents are removed)")
    p.add_argument("--prune", action="store_true", help="with --out: remove documents the log no longer has")
    p = verbs.add("parse", cmd_parse, "run a named parser over response files (no model call)",
                  "chronicle parse score eval_responses/*.txt --json", workspace=False)
    p.add_argument("parser", metavar="PARSER", help=", ".join(sorted(parsers.PARSERS)))
    p.add_argument("files", nargs="+", metavar="FILE")
