"""The review queue: what most needs a human, stratified by project.

An item is a session-commit link or an episode's reaction that the classifier gave
less confidence than ``[quality] review_below`` and nobody labelled, or anything
whose label disagrees with the classifier (a link labelled ``no``, a link labelled
``yes`` that the linker did not find, a reaction or an action class labelled
otherwise). Disagreements come first, then the least confident. Projects take turns,
so a queue of N items samples every project, not the busiest one.

Each item is the line ``chronicle label import`` reads back: ``kind``, ``id`` and a
``label`` to fill in (null until answered; ``labeled`` is the label given before),
with what a labeller needs to see.
"""

from __future__ import annotations

import polars as pl

from chronicle.training.labels import LINK_VALUES, labelled_actions, standing

KINDS = ("link", "episode", "action")
_TEXT = 400


def links(tables: dict[str, pl.DataFrame]) -> pl.DataFrame:
    """One row per linked (session, commit): the best confidence and its method, the label if any."""
    best = (tables["session_commits"].sort("confidence", "method", descending=[True, False])
            .group_by("session_id", "sha", maintain_order=True)
            .agg(pl.col("repo").first(), pl.col("confidence").first(), pl.col("method").first(),
                 pl.col("evidence").first())
            .with_columns((pl.col("session_id") + "@" + pl.col("sha")).alias("id")))
    joined = best.join(standing(tables["labels"], "link", "id"), on="id", how="full", coalesce=True)
    split = pl.col("id").str.split_exact("@", 1)
    return joined.with_columns(split.struct.field("field_0").alias("session_id"),
                               split.struct.field("field_1").alias("sha"),
                               pl.col("confidence").is_not_null().alias("predicted")).sort("id")


def queue(tables: dict[str, pl.DataFrame], below: float, *, kinds: tuple[str, ...] = KINDS,
          limit: int | None = 50, per_project: int | None = None) -> list[dict]:
    project = dict(tables["session_projects"].iter_rows())
    items: list[dict] = []
    if "link" in kinds:
        items += _link_items(tables, below, project)
    if "episode" in kinds:
        items += _episode_items(tables, below, project)
    if "action" in kinds:
        items += _action_items(tables, project)
    by_project: dict[str, list[dict]] = {}
    for item in sorted(items, key=lambda i: (not i["disagreement"], i["confidence"], i["kind"], i["id"])):
        by_project.setdefault(item["project"] or "", []).append(item)
    turns = [group[:per_project] if per_project else group for _, group in sorted(by_project.items())]
    ordered = [group[i] for i in range(max(map(len, turns), default=0)) for group in turns if i < len(group)]
    return ordered[:limit] if limit is not None else ordered


def _link_items(tables: dict[str, pl.DataFrame], below: float, project: dict) -> list[dict]:
    commits = {sha: subject for sha, subject in tables["commits"].select("sha", "subject").iter_rows()}
    titles = dict(tables["sessions"].select("session_id", "title").iter_rows())
    out = []
    for row in links(tables).iter_rows(named=True):
        disagrees = row["label"] is not None and (row["label"] == "no") == row["predicted"]
        if not disagrees and (row["label"] is not None or row["confidence"] >= below):
            continue
        out.append(_item("link", row["id"], project.get(row["session_id"]),
                         "yes" if row["predicted"] else "no", row["confidence"] or 0.0, row["label"], disagrees,
                         {"session": row["session_id"], "session_title": titles.get(row["session_id"]),
                          "commit": row["sha"], "commit_subject": commits.get(row["sha"]),
                          "method": row["method"], "evidence": row["evidence"]},
                         choices=list(LINK_VALUES)))
    return out


def _episode_items(tables: dict[str, pl.DataFrame], below: float, project: dict) -> list[dict]:
    from chronicle.training.labels import reaction_values

    labels = dict(standing(tables["labels"], "episode", "episode_id").select("episode_id", "label").iter_rows())
    out = []
    for row in tables["episodes"].select("episode_id", "session_id", "prompt", "reaction_text", "reaction",
                                         "reaction_confidence").iter_rows(named=True):
        label = labels.get(row["episode_id"])
        disagrees = label is not None and label != row["reaction"]
        if not disagrees and (label is not None or row["reaction_confidence"] >= below):
            continue
        out.append(_item("episode", row["episode_id"], project.get(row["session_id"]), row["reaction"],
                         row["reaction_confidence"], label, disagrees,
                         {"session": row["session_id"], "prompt": _cut(row["prompt"]),
                          "reaction_text": _cut(row["reaction_text"])}, choices=reaction_values()))
    return out


def _action_items(tables: dict[str, pl.DataFrame], project: dict) -> list[dict]:
    """Only disagreements: every tool call is classified by rule, with no confidence to rank."""
    from chronicle.training.labels import action_values

    out = []
    for row in labelled_actions(tables).filter(pl.col("predicted") != pl.col("label")).iter_rows(named=True):
        out.append(_item("action", row["tool_use_id"], project.get(row["session_id"]), row["predicted"], 1.0,
                         row["label"], True, {"session": row["session_id"], "tool": row["tool_name"],
                                              "input": _cut(row["input_summary"])}, choices=action_values()))
    return out


def _item(kind: str, id_: str, project: str | None, predicted: str, confidence: float, label: str | None,
          disagreement: bool, context: dict, choices: list[str]) -> dict:
    return {"kind": kind, "id": id_, "project": project, "predicted": predicted, "confidence": confidence,
            "labeled": label, "label": None, "disagreement": disagreement,
            "reason": "label disagrees with the classifier" if disagreement else "low confidence",
            "choices": choices, "context": context}


def _cut(text: str | None) -> str | None:
    return text if text is None or len(text) <= _TEXT else text[:_TEXT] + "…"
