"""Cohorts: ``data/cohorts/<cohort_id>/cohort.toml`` expanded into a deterministic membership.

A spec::

    [concepts]
    level = "paragraph"            # description level used in draft prompts
    k = 2                          # all k-combinations of `from` ...
    from = ["a", "b", "c"]
    # sets = [["a", "b"], ["b", "c"]]   # ... or explicit sets (k_max = k, else the largest set)

    [draft]
    templates = ["creative-synthesis-v10"]
    models = ["gemma_local"]
    replicates = 1                 # default: replication_config.csv, else 1

    [essay]                        # models are ignored for `copy` templates
    templates = ["creative-synthesis-v10"]
    models = ["gemma_local"]

    [evaluation]
    templates = ["novelty-v2"]
    models = ["gemma_local"]

Every row of the membership is one logical key (see :mod:`ids`). Rows are
sorted, so the same spec over the same definitions always gives the same
membership, and the ``cohort.defined`` event only changes when either does.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import tomllib
from pathlib import Path

import msgspec

from chronicle.experiment import ids
from chronicle.experiment.definitions import STAGES, Definitions


class CohortError(ValueError):
    """A cohort spec is missing, malformed, or names something the definitions lack."""


class Member(msgspec.Struct, frozen=True, kw_only=True):
    stage: str
    logical_key_id: str
    task_id: str
    parent_key: str | None
    combo_id: str
    concept_ids: list[str]
    level: str
    template_id: str
    template_sha256: str | None
    model_id: str
    replicate: int
    parser: str
    generator: str


class Plan(msgspec.Struct, frozen=True):
    cohort_id: str
    spec_sha256: str
    spec: str
    members: list[Member]

    def calls(self) -> dict[tuple[str, str], int]:
        """LLM calls per (stage, model) if every attempt succeeds first time."""
        out: dict[tuple[str, str], int] = {}
        for m in self.members:
            if m.generator == "llm":
                out[(m.stage, m.model_id)] = out.get((m.stage, m.model_id), 0) + 1
        return out


def spec_path(root: Path, cohort_id: str) -> Path:
    if not cohort_id or "/" in cohort_id or "\\" in cohort_id or cohort_id.startswith("."):
        raise CohortError(f"invalid cohort id {cohort_id!r}: use a plain folder name")
    return root / cohort_id / "cohort.toml"


def read_spec(path: Path) -> tuple[str, dict]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CohortError(f"{path}: no such cohort spec") from None
    try:
        return text, tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise CohortError(f"{path}: {exc}") from None


def _list(spec: dict, section: str, key: str, path: Path) -> list[str]:
    value = spec.get(section, {}).get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise CohortError(f"{path}: [{section}] {key} must be a list of strings")
    return value


def _combos(spec: dict, d: Definitions, path: Path) -> tuple[str, list[tuple[str, list[str]]]]:
    c = spec.get("concepts")
    if not isinstance(c, dict):
        raise CohortError(f"{path}: missing [concepts] section")
    level = c.get("level", "paragraph")
    if "sets" in c:
        sets = c["sets"]
        if not isinstance(sets, list) or not all(isinstance(s, list) and s for s in sets):
            raise CohortError(f"{path}: [concepts] sets must be a list of non-empty lists of concept ids")
        k_max = int(c.get("k", max(len(s) for s in sets)))
    else:
        pool, k_max = _list(spec, "concepts", "from", path), c.get("k")
        if not isinstance(k_max, int) or not 1 <= k_max <= len(pool):
            raise CohortError(f"{path}: [concepts] k must be an integer from 1 to len(from) = {len(pool)}")
        sets = [list(s) for s in itertools.combinations(sorted(set(pool)), k_max)]
    out = []
    for s in sets:
        for cid in s:
            if cid not in d.concepts:
                raise CohortError(f"{path}: [concepts] unknown concept {cid!r}")
            if (level, cid) not in d.descriptions:
                raise CohortError(f"{path}: concept {cid!r} has no {level} description "
                                  f"(concepts/descriptions-{level}/{cid}.txt)")
        out.append((ids.combo_id(s, level, k_max), sorted(s)))
    return level, sorted(out)


def _stage_choices(spec: dict, stage: str, d: Definitions, path: Path) -> tuple[list, list[str], int]:
    templates = _list(spec, stage, "templates", path)
    models = _list(spec, stage, "models", path)
    chosen = []
    for tid in templates:
        t = d.templates.get((stage, tid))
        if t is None:
            raise CohortError(f"{path}: [{stage}] unknown template {tid!r}")
        if t.generator == "llm" and t.text is None:
            raise CohortError(f"{path}: [{stage}] template {tid!r} has no file templates/{stage}/{tid}.txt")
        bad = [str(p) for p in d.errors if p.path == f"templates/{stage}/{tid}.txt"]
        if bad:
            raise CohortError(f"{path}: [{stage}] template {tid!r} is unusable: {'; '.join(bad)}")
        chosen.append(t)
    for mid in models:
        if mid not in d.models:
            raise CohortError(f"{path}: [{stage}] unknown model {mid!r} (not in llm_models.csv)")
    if any(t.generator == "llm" for t in chosen) and not models:
        raise CohortError(f"{path}: [{stage}] lists LLM templates but no models")
    replicates = spec.get(stage, {}).get("replicates", d.replication.get(stage, 1))
    if not isinstance(replicates, int) or replicates < 1:
        raise CohortError(f"{path}: [{stage}] replicates must be a positive integer")
    return chosen, models, replicates


def _sha(*parts: str | None) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update((p or "").encode())
        h.update(b"\0")
    return h.hexdigest()


def plan(cohort_id: str, spec_text: str, spec: dict, d: Definitions, path: Path) -> Plan:
    level, combos = _combos(spec, d, path)
    choices = {stage: _stage_choices(spec, stage, d, path) for stage in STAGES if stage in spec}
    if "draft" not in choices:
        raise CohortError(f"{path}: missing [draft] section")
    members: list[Member] = []
    drafts: list[Member] = []
    templates, models, reps = choices["draft"]
    for combo, concept_ids in combos:
        descriptions = [d.descriptions[(level, c)] for c in concept_ids]
        for t in templates:
            for mid in models:
                for r in range(1, reps + 1):
                    drafts.append(Member(
                        stage="draft", logical_key_id=ids.logical_key_id(
                            "draft", combo, t.template_id, mid, r, _sha(t.text, *descriptions)),
                        task_id=ids.gen_id("draft", combo, t.template_id, mid, r), parent_key=None,
                        combo_id=combo, concept_ids=concept_ids, level=level, template_id=t.template_id,
                        template_sha256=t.sha256, model_id=mid, replicate=r, parser=t.parser, generator=t.generator))
    members += drafts
    parents = drafts
    for stage in ("essay", "evaluation"):
        if stage not in choices:
            break
        templates, models, reps = choices[stage]
        children = []
        for parent in parents:
            for t in templates:
                for mid in (models if t.generator == "llm" else ["copy"]):
                    for r in range(1, reps + 1):
                        task = (ids.gen_id("essay", parent.task_id, t.template_id, r) if stage == "essay"
                                else ids.gen_id("evaluation", parent.task_id, t.template_id, mid, r))
                        children.append(Member(
                            stage=stage, logical_key_id=ids.logical_key_id(
                                stage, parent.logical_key_id, t.template_id, mid, r, _sha(t.text)),
                            task_id=task, parent_key=parent.logical_key_id, combo_id=parent.combo_id,
                            concept_ids=parent.concept_ids, level=level, template_id=t.template_id,
                            template_sha256=t.sha256, model_id=mid, replicate=r, parser=t.parser,
                            generator=t.generator))
        members += children
        parents = children
    order = {s: i for i, s in enumerate(STAGES)}
    members.sort(key=lambda m: (order[m.stage], m.combo_id, m.template_id, m.model_id, m.replicate, m.logical_key_id))
    return Plan(cohort_id, hashlib.sha256(spec_text.encode()).hexdigest(), spec_text, members)


def membership_json(p: Plan) -> str:
    return json.dumps(msgspec.to_builtins(p.members), sort_keys=True, separators=(",", ":"))


def members_from_json(text: str) -> list[Member]:
    return msgspec.json.decode(text.encode(), type=list[Member])
