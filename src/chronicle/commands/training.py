"""From sessions to a training set: `label`, `review`, `report quality`, `export episodes`, `release`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from chronicle.commands.output import out, print_json
from chronicle.commands.verbs import Verbs
from chronicle.errors import EXIT_FAILED, EXIT_OK, UsageError
from chronicle.workspace import Workspace

LABEL_EXAMPLES = """\
examples:
  chronicle label episode ep-3f2a9c1d reaction=correct --note "asked to revert"
  chronicle label link 6f1c2a9e-... 3f2a9c1 yes
  chronicle label action toolu_01AbC... read
  chronicle review --json > queue.jsonl   # fill in "label" on each line, then:
  chronicle label import queue.jsonl
"""
REVIEW_EXAMPLES = """\
examples:
  chronicle review                          # links and reactions below [quality] review_below, disagreements
  chronicle review --kind link --limit 200 --per-project 20
  chronicle review --json > queue.jsonl     # for a labelling tool; `chronicle label import` reads it back
"""
EXPORT_EXAMPLES = """\
examples:
  chronicle export episodes out/ --split time:2026-11-01
  chronicle export episodes out/ --format jsonl --split random:0.2:42 --min-confidence 0.6
  chronicle export episodes out/ --split project --labeled-only --projects app,api
"""
RELEASE_EXAMPLES = """\
examples:
  chronicle release v1 --split random:0.2:42        # data/releases/v1/, recorded in the log
  chronicle release verify v1                       # rebuild it from the log as of its checkpoint
  chronicle release list
"""


def register(verbs: Verbs) -> None:
    verbs.group("label", "label episodes, actions and session-commit links (annotation events)",
                "chronicle label episode ep-3f2a9c1d reaction=correct")
    p = verbs.add("episode", cmd_label_episode, "an episode's reaction: KEY=VALUE (reaction=correct)", "",
                  under="label", epilog=LABEL_EXAMPLES)
    p.add_argument("id", metavar="ID", help="an episode id (episodes.episode_id)")
    p.add_argument("pairs", nargs="+", metavar="KEY=VALUE", help="reaction=LABEL (a label of the reaction taxonomy)")
    _who(p)
    p = verbs.add("link", cmd_label_link, "whether a session made a commit: yes or no", "",
                  under="label", epilog=LABEL_EXAMPLES)
    p.add_argument("session", metavar="SESSION", help="a session id (or a unique prefix)")
    p.add_argument("commit", metavar="COMMIT", help="a commit hash (7 characters or more)")
    p.add_argument("value", metavar="yes|no")
    _who(p)
    p = verbs.add("action", cmd_label_action, "a tool call's class in the action taxonomy", "",
                  under="label", epilog=LABEL_EXAMPLES)
    p.add_argument("id", metavar="ID", help="a tool call id (tool_calls.tool_use_id)")
    p.add_argument("value", metavar="CLASS")
    _who(p)
    p = verbs.add("import", cmd_label_import, "labels from JSON Lines (kind, id, label[, note, author]): "
                  "all or nothing; lines whose label is null are skipped", "", under="label", epilog=LABEL_EXAMPLES)
    p.add_argument("file", metavar="FILE", type=Path)
    p.add_argument("--author", help="who labelled, where a line does not say (default: $CHRONICLE_AUTHOR or your login)")

    p = verbs.add("review", cmd_review, "what most needs a human label: low confidence, disagreements; by project",
                  "", epilog=REVIEW_EXAMPLES)
    p.add_argument("--below", type=float, metavar="F", help="confidence under which an item is queued "
                                                            "(default: [quality] review_below)")
    p.add_argument("--kind", metavar="K,K", default="link,episode,action", help="link, episode, action (default all)")
    p.add_argument("--limit", type=int, default=50, metavar="N", help="at most N items (0: all; default 50)")
    p.add_argument("--per-project", type=int, metavar="N", help="at most N items of any one project")

    verbs.group("export", "write ingested sources back out, byte for byte, or sessions as HTML or Markdown",
                "chronicle export sessions ~/restored")
    p = verbs.add("episodes", cmd_export_episodes, "episodes as a training set: Parquet or JSON Lines, split, "
                  "with a dataset card (README.md)", "", under="export", json=False, epilog=EXPORT_EXAMPLES)
    p.add_argument("dir", metavar="DIR", type=Path, help="an empty or new folder")
    _export_options(p)

    p = verbs.add("release", cmd_release, "freeze an export of episodes at a checkpoint; `release verify NAME` "
                  "rebuilds it from the log; `release list`", "", epilog=RELEASE_EXAMPLES)
    p.add_argument("words", nargs="+", metavar="NAME | verify NAME | list")
    _export_options(p)
    p.add_argument("--author", help="who released (default: $CHRONICLE_AUTHOR or your login)")


def _who(p: argparse.ArgumentParser) -> None:
    p.add_argument("--note", help="why, in a few words")
    p.add_argument("--author", help="who labelled (default: $CHRONICLE_AUTHOR or your login)")


def _export_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", choices=["parquet", "jsonl"], default="parquet")
    p.add_argument("--split", metavar="SPEC", help="time:DATE (before: train, from: test), project (a split per "
                                                   "project) or random:FRACTION:SEED (FRACTION to test)")
    p.add_argument("--min-confidence", type=float, metavar="F",
                   help="only episodes labelled or whose reaction the classifier gave at least F")
    p.add_argument("--labeled-only", action="store_true", help="only episodes with a label (reaction or action)")
    p.add_argument("--projects", metavar="ID,ID", help="only these projects (ids or names; default: every project "
                                                       "not marked excluded)")


def _options(args: argparse.Namespace):
    from chronicle.training.dataset import Options, check

    options = Options(format=args.format, split=args.split, min_confidence=args.min_confidence,
                      labeled_only=args.labeled_only,
                      projects=sorted({p.strip() for p in args.projects.split(",") if p.strip()}) if args.projects else None)
    check(options)
    return options


def _append_labels(ws: Workspace, given: list, where: str, author: str) -> list:
    from chronicle.training import labels, tables

    current, _ = tables.current(ws, labels.TABLES)
    checker = labels.Checker(current)
    events = [checker.event(g, where, author) for g in given]
    return ws.open_log().append(events)


def _said(args: argparse.Namespace, acks, what: str) -> int:
    if args.json:
        for ack in acks:
            print_json({"seq": ack.seq, "event_id": ack.event_id, "label": what})
    else:
        out(f"labelled {what} (seq {', '.join(str(a.seq) for a in acks)})")
    return EXIT_OK


def cmd_label_episode(ws: Workspace, args: argparse.Namespace) -> int:
    from chronicle.training.labels import Label, LabelError, default_author

    given = []
    for pair in args.pairs:
        key, sep, value = pair.partition("=")
        if not sep or key != "reaction":
            raise LabelError(f"label episode {args.id}: {pair!r} is not reaction=LABEL")
        given.append(Label(kind="episode", id=args.id, label=value, note=args.note))
    acks = _append_labels(ws, given, f"label episode {args.id}", args.author or default_author())
    return _said(args, acks, f"episode {args.id}: " + ", ".join(args.pairs))


def cmd_label_link(ws: Workspace, args: argparse.Namespace) -> int:
    from chronicle.training.labels import Label, default_author

    given = Label(kind="link", id=f"{args.session}@{args.commit}", label=args.value, note=args.note)
    acks = _append_labels(ws, [given], f"label link {args.session} {args.commit}", args.author or default_author())
    return _said(args, acks, f"link {args.session} {args.commit}: {args.value}")


def cmd_label_action(ws: Workspace, args: argparse.Namespace) -> int:
    from chronicle.training.labels import Label, default_author

    given = Label(kind="action", id=args.id, label=args.value, note=args.note)
    acks = _append_labels(ws, [given], f"label action {args.id}", args.author or default_author())
    return _said(args, acks, f"action {args.id}: {args.value}")


def cmd_label_import(ws: Workspace, args: argparse.Namespace) -> int:
    from chronicle.store.errors import ConflictingEvent
    from chronicle.training import labels, tables

    current, _ = tables.current(ws, labels.TABLES)
    events, unanswered = labels.read_import(args.file, labels.Checker(current), args.author or labels.default_author())
    try:
        acks = ws.open_log().append(events) if events else []
    except ConflictingEvent as exc:
        raise labels.LabelError(f"{args.file}: imported before with other content ({exc}); nothing was written") from None
    new = sum(1 for a in acks if not a.duplicate)
    if args.json:
        print_json({"file": str(args.file), "labels": len(events), "new": new, "unanswered": unanswered})
    else:
        out(f"{args.file}: {len(events)} labels ({new} new, {len(events) - new} imported before), "
            f"{unanswered} lines unanswered")
    return EXIT_OK


def cmd_review(ws: Workspace, args: argparse.Namespace) -> int:
    from chronicle.secrets.mask import Masker
    from chronicle.training import review, tables

    kinds = tuple(k.strip() for k in args.kind.split(",") if k.strip())
    bad = [k for k in kinds if k not in review.KINDS]
    if bad or not kinds:
        raise UsageError(f"--kind: {', '.join(bad) or args.kind!r} is not one of {', '.join(review.KINDS)}")
    below = ws.config.quality.review_below if args.below is None else args.below
    if not 0 <= below <= 1:
        raise UsageError(f"--below: {below} is not between 0 and 1")
    if args.limit < 0 or (args.per_project is not None and args.per_project < 1):
        raise UsageError("--limit must be 0 or more, --per-project 1 or more")
    current, seq = tables.current(ws)
    items = review.queue(current, below, kinds=kinds, limit=args.limit or None, per_project=args.per_project)
    masker = Masker.of(ws)
    items = [masker.value(item) for item in items]
    if args.json:
        for item in items:
            print_json(item)
        return EXIT_OK
    if not items:
        out(f"nothing to review at seq {seq} (below {below}, kinds {', '.join(kinds)})")
        return EXIT_OK
    out(f"{len(items)} item(s) to review at seq {seq} (confidence below {below}, and disagreements):")
    for item in items:
        what = item["context"].get("commit_subject") or item["context"].get("prompt") or item["context"].get("input") or ""
        line = " ".join(str(what).split())[:70]
        out(f"  {item['kind']:<7} {item['id'][:52]:<52} {item['project'] or '-':<16} {item['predicted']:<9} "
            f"{item['confidence']:.2f}  {('labelled ' + item['labeled']) if item['labeled'] else ''}  {line}")
    out("label one with `chronicle label KIND ...`, or all with `chronicle review --json > q.jsonl` + `label import q.jsonl`")
    return EXIT_OK


def cmd_quality(ws: Workspace, args: argparse.Namespace) -> int:
    from chronicle.training import quality, tables

    bar = ws.config.quality.bar if args.bar is None else args.bar
    if not 0 <= bar <= 1:
        raise UsageError(f"--bar: {bar} is not between 0 and 1")
    current, seq = tables.current(ws)
    result = quality.report(current, bar)
    if args.project:
        result["projects"] = [p for p in result["projects"] if args.project in p["project_id"] or args.project in p["name"]]
    if args.json:
        print_json({"seq": seq, **result})
        return EXIT_OK
    out(f"quality at seq {seq}; inclusion bar: link precision >= {bar}")
    out(f"{'project':<24} {'tier':>4} {'sessions':>8}  {'link precision (95% CI)':<28} {'recall (95% CI)':<28} "
        f"{'reactions right (95% CI)':<28} verdict")
    overall = {"project_id": "(overall)", "tier": "", "sessions": "", **result["overall"], "verdict": "",
               "reaction_accuracy": None}
    for p in [*result["projects"], overall]:
        links = p["links"]
        reactions = _ratio(p["reaction_accuracy"]) if p["reaction_accuracy"] else ""
        out(f"{p['project_id'][:24]:<24} {p['tier']!s:>4} {p['sessions']!s:>8}  {_ratio(links['precision']):<28} "
            f"{_ratio(links['recall']):<28} {reactions:<28} {p['verdict']}")
    for kind in ("reaction", "action"):
        for t in result[kind]:
            out(f"{kind} classifier {t['taxonomy']}: accuracy {_ratio(t['accuracy'])}")
            for label, row in t["confusion"].items():
                out(f"  labelled {label:<10} -> " + ", ".join(f"{k} {v}" for k, v in row.items()))
        if not result[kind]:
            out(f"{kind} classifier: no labels yet (chronicle label {'episode ID reaction=LABEL' if kind == 'reaction' else 'action ID CLASS'})")
    return EXIT_OK


def _ratio(r: dict) -> str:
    if r["value"] is None:
        return "- (no labels)"
    low, high = r["ci95"]
    return f"{r['value']:.2f} ({r['k']}/{r['n']}; {low:.2f}-{high:.2f})"


def cmd_export_episodes(ws: Workspace, args: argparse.Namespace) -> int:
    from chronicle.training import release, tables

    options = _options(args)
    target = args.dir.resolve()
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise UsageError(f"{target}: not an empty folder (an export never mixes with other files)")
    current, seq = tables.current(ws)
    files = release.export(ws, current, options, seq, tables.head_hash_at(ws, seq), target,
                           f"chronicle episodes at seq {seq}")
    for path in files:
        out(f"{target / path}")
    sys.stderr.write(f"exported episodes at seq {seq} into {target}\n")
    return EXIT_OK


def cmd_release(ws: Workspace, args: argparse.Namespace) -> int:
    from chronicle.training import release
    from chronicle.training.labels import default_author

    words = args.words
    if words == ["list"]:
        rows = release.recorded(ws)
        for r in rows.iter_rows(named=True):
            if args.json:
                print_json({k: r[k] for k in ("name", "at_seq", "head_hash", "author", "recorded_at", "options_json")})
            else:
                out(f"{r['name']:<20} seq {r['at_seq']:<10} {r['head_hash'][:16]}  by {r['author']}  {r['options_json']}")
        if not rows.height and not args.json:
            out("no releases yet (chronicle release NAME)")
        return EXIT_OK
    if words[0] == "verify" and len(words) != 2:
        raise UsageError("release verify: give one NAME (chronicle release list shows them)")
    if words[0] == "verify":
        result = release.check(ws, words[1])
        if args.json:
            print_json({"name": result.name, "seq": result.seq, "ok": result.ok,
                        "head_hash_ok": result.head_hash_ok, "files": result.files})
        else:
            out(f"release {result.name} at seq {result.seq}: log {'matches' if result.head_hash_ok else 'DIFFERS from'} "
                "its recorded head hash")
            for path, state in result.files.items():
                out(f"  {state:<8} {path}")
            out("verified: every byte rebuilt from the log" if result.ok else
                "FAILED: see above (a redaction or an allowed secret since changes text; an altered file is altered)")
        return EXIT_OK if result.ok else EXIT_FAILED
    if len(words) != 1:
        raise UsageError("release: NAME, verify NAME or list")
    frozen = release.freeze(ws, words[0], _options(args), args.author or default_author())
    if args.json:
        print_json({"name": frozen.name, "seq": frozen.at_seq, "head_hash": frozen.head_hash,
                    "files": json.loads(frozen.files_json)})
    else:
        out(f"released {frozen.name}: episodes at seq {frozen.at_seq} (head {frozen.head_hash[:16]}...) "
            f"in {release.releases_dir(ws) / frozen.name}")
    return EXIT_OK
