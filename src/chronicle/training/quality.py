"""Measured quality: the classifiers against the labels people gave.

- **Session-commit links**, per project and overall: of the labelled pairs, a pair
  the linker found (``session_commits``) and labelled ``yes`` is a true positive,
  labelled ``no`` a false positive; a pair labelled ``yes`` that it did not find is
  a false negative. Precision and recall come with their counts and a 95% Wilson
  score interval (right at 0 and 1 and for a handful of labels, where the normal
  approximation is not).
- **Reactions and actions**: accuracy of the classifier against the labels, with a
  confusion matrix (label by classifier), per taxonomy version the classifier ran;
  the reaction classifier's accuracy per project too.
- **Inclusion**: a project is included when its measured link precision reaches the
  bar (``[quality] bar``, 0.7 by default); "unmeasured" when none of its found links
  is labelled; "excluded" when chronicle.toml says so.
"""

from __future__ import annotations

import math

import polars as pl

from chronicle.training.labels import labelled_actions, standing
from chronicle.training.review import links

Z95 = 1.959964


def wilson(k: int, n: int) -> tuple[float, float] | None:
    """The 95% Wilson score interval of k successes in n trials (None when n is 0)."""
    if n == 0:
        return None
    p, z2 = k / n, Z95 * Z95
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = Z95 * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return round(max(0.0, centre - half), 4), round(min(1.0, centre + half), 4)


def ratio(k: int, n: int) -> dict:
    return {"value": round(k / n, 4) if n else None, "k": k, "n": n, "ci95": wilson(k, n)}


def link_counts(labelled: pl.DataFrame) -> dict:
    tp = labelled.filter(pl.col("predicted") & (pl.col("label") == "yes")).height
    fp = labelled.filter(pl.col("predicted") & (pl.col("label") == "no")).height
    fn = labelled.filter(~pl.col("predicted") & (pl.col("label") == "yes")).height
    return {"tp": tp, "fp": fp, "fn": fn, "precision": ratio(tp, tp + fp), "recall": ratio(tp, tp + fn)}


def report(tables: dict[str, pl.DataFrame], bar: float) -> dict:
    membership = tables["session_projects"]
    pairs = links(tables).join(membership, on="session_id", how="left").filter(pl.col("label").is_not_null())
    reactions = _reaction_pairs(tables).join(membership, on="session_id", how="left")
    projects = []
    for row in tables["projects"].sort("project_id").iter_rows(named=True):
        counts = link_counts(pairs.filter(pl.col("project_id") == row["project_id"]))
        precision = counts["precision"]["value"]
        if row["status"] == "excluded":
            verdict = "excluded"
        elif precision is None:
            verdict = "unmeasured"
        else:
            verdict = "included" if precision >= bar else "below bar"
        mine = reactions.filter(pl.col("project_id") == row["project_id"])
        projects.append({"project_id": row["project_id"], "name": row["name"], "tier": row["tier"],
                         "sessions": row["sessions"], "links": counts, "verdict": verdict,
                         "reaction_accuracy": ratio(mine.filter(pl.col("label") == pl.col("predicted")).height,
                                                    mine.height)})
    return {"bar": bar, "projects": projects, "overall": {"links": link_counts(pairs)},
            "reaction": _reactions(tables), "action": _actions(tables)}


def _accuracy(pairs: pl.DataFrame, version: str) -> list[dict]:
    """Per taxonomy version: accuracy and the confusion matrix {label: {classifier: n}}."""
    out = []
    for (taxonomy,), group in pairs.group_by(version, maintain_order=True):
        matrix: dict[str, dict[str, int]] = {}
        for label, predicted in group.select("label", "predicted").iter_rows():
            row = matrix.setdefault(label, {})
            row[predicted] = row.get(predicted, 0) + 1
        right = group.filter(pl.col("label") == pl.col("predicted")).height
        out.append({"taxonomy": taxonomy, "accuracy": ratio(right, group.height),
                    "confusion": {k: dict(sorted(v.items())) for k, v in sorted(matrix.items())}})
    return sorted(out, key=lambda r: r["taxonomy"])


def _reaction_pairs(tables: dict[str, pl.DataFrame]) -> pl.DataFrame:
    """Each labelled episode: its session, the label, what the classifier said, and its taxonomy."""
    return tables["episodes"].join(standing(tables["labels"], "episode", "episode_id"), on="episode_id").select(
        "session_id", "label", pl.col("reaction").alias("predicted"), "reaction_taxonomy")


def _reactions(tables: dict[str, pl.DataFrame]) -> list[dict]:
    return _accuracy(_reaction_pairs(tables), "reaction_taxonomy")


def _actions(tables: dict[str, pl.DataFrame]) -> list[dict]:
    from chronicle.projections.episodes import ACTION_TAXONOMY

    pairs = labelled_actions(tables).select("label", "predicted", pl.lit(ACTION_TAXONOMY).alias("action_taxonomy"))
    return _accuracy(pairs, "action_taxonomy")
