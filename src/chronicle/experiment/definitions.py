"""Experiment definitions: the ``data/1_raw`` layout, loaded and checked.

The layout (as in the DayDreaming project)::

    concepts_metadata.csv                    concept_id,name
    concepts/descriptions-<level>/<id>.txt   one description per concept and level
    <stage>_templates.csv                    template_id,template_name,description,parser,generator
    templates/<stage>/<template_id>.txt      Jinja2
    llm_models.csv                           id,model,provider,display_name,...
    replication_config.csv                   stage,replicates

:func:`parse` works on a ``{relative path: bytes}`` mapping, so the same code
reads a folder on disk and the definitions recorded in the log (for audits).
Problems are collected, never raised: each names the file, the line where
there is one, and what is wrong. Errors make a definition unusable (a cohort
that needs it refuses to plan); warnings are reported and change nothing.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path

from chronicle.experiment import parsers
from chronicle.experiment.render import sha256_text, syntax_error

STAGES = ("draft", "essay", "evaluation")
GENERATORS = ("llm", "copy")


@dataclass(frozen=True)
class Problem:
    path: str
    line: int | None
    severity: str  # "error" | "warning"
    message: str

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else self.path
        return f"{where}: {self.severity}: {self.message}"


@dataclass(frozen=True)
class Template:
    stage: str
    template_id: str
    name: str
    parser: str
    generator: str
    text: str | None
    sha256: str | None
    active: bool = True


@dataclass(frozen=True)
class Model:
    model_id: str
    model: str
    provider: str
    display_name: str


@dataclass
class Definitions:
    concepts: dict[str, str] = field(default_factory=dict)  # concept_id -> name
    descriptions: dict[tuple[str, str], str] = field(default_factory=dict)  # (level, concept_id) -> text
    templates: dict[tuple[str, str], Template] = field(default_factory=dict)  # (stage, template_id)
    models: dict[str, Model] = field(default_factory=dict)
    replication: dict[str, int] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    def levels(self) -> list[str]:
        return sorted({lvl for lvl, _ in self.descriptions})

    def _problem(self, path: str, line: int | None, severity: str, message: str) -> None:
        self.problems.append(Problem(path, line, severity, message))


def kind_of(rel: str) -> str:
    """What a file in 1_raw is, for the ``definitions.snapshot`` event."""
    parts = rel.split("/")
    if rel == "concepts_metadata.csv":
        return "concepts_metadata"
    if len(parts) == 3 and parts[0] == "concepts" and parts[1].startswith("descriptions-"):
        return "concept_description"
    if len(parts) == 1 and rel.endswith("_templates.csv"):
        return "templates_csv"
    if len(parts) == 3 and parts[0] == "templates":
        return "template"
    if rel == "llm_models.csv":
        return "llm_models"
    if rel == "replication_config.csv":
        return "replication_config"
    return "other"


def read_folder(root: Path) -> dict[str, bytes]:
    """Every regular, non-hidden file under ``root``, by path relative to it (``/``-separated)."""
    out: dict[str, bytes] = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_file() and not any(part.startswith(".") for part in rel.split("/")):
            out[rel] = path.read_bytes()
    return out


def _text(files: dict[str, bytes], rel: str, d: Definitions) -> str | None:
    try:
        return files[rel].decode("utf-8")
    except UnicodeDecodeError as exc:
        d._problem(rel, None, "error", f"not UTF-8 text (byte {exc.start})")
        return None


def _rows(files: dict[str, bytes], rel: str, d: Definitions, required: tuple[str, ...]) -> list[tuple[int, dict]]:
    text = _text(files, rel, d)
    if text is None:
        return []
    reader = csv.DictReader(io.StringIO(text))
    missing = [c for c in required if c not in (reader.fieldnames or [])]
    if missing:
        d._problem(rel, 1, "error", f"missing column(s) {', '.join(missing)}; has {', '.join(reader.fieldnames or [])}")
        return []
    rows = []
    for row in reader:
        rows.append((reader.line_num, {k: (v or "").strip() for k, v in row.items() if k is not None}))
    return rows


def parse(files: dict[str, bytes]) -> Definitions:
    d = Definitions()
    used: set[str] = set()
    _concepts(files, d, used)
    _templates(files, d, used)
    _models(files, d, used)
    _replication(files, d, used)
    for rel in sorted(set(files) - used):
        if kind_of(rel) in ("template", "concept_description"):
            d._problem(rel, None, "warning", "file is listed in no CSV (not used)")
    return d


def _concepts(files: dict[str, bytes], d: Definitions, used: set[str]) -> None:
    rel = "concepts_metadata.csv"
    if rel not in files:
        d._problem(rel, None, "warning", "missing: no concepts defined")
        return
    used.add(rel)
    for line, row in _rows(files, rel, d, ("concept_id", "name")):
        cid = row["concept_id"]
        if not cid:
            d._problem(rel, line, "error", "empty concept_id")
        elif cid in d.concepts:
            d._problem(rel, line, "error", f"duplicate concept_id {cid!r}")
        else:
            d.concepts[cid] = row["name"]
    for path in files:
        parts = path.split("/")
        if kind_of(path) == "concept_description" and parts[2].endswith(".txt"):
            level, cid = parts[1].removeprefix("descriptions-"), parts[2][: -len(".txt")]
            if cid in d.concepts:
                text = _text(files, path, d)
                if text is not None:
                    d.descriptions[(level, cid)] = text
                    used.add(path)


def _templates(files: dict[str, bytes], d: Definitions, used: set[str]) -> None:
    for rel in sorted(files):
        if kind_of(rel) != "templates_csv":
            continue
        stage = rel[: -len("_templates.csv")]
        used.add(rel)
        for line, row in _rows(files, rel, d, ("template_id",)):
            tid = row["template_id"]
            if not tid:
                d._problem(rel, line, "error", "empty template_id")
                continue
            if (stage, tid) in d.templates:
                d._problem(rel, line, "error", f"duplicate template_id {tid!r}")
                continue
            parser = row.get("parser") or parsers.DEFAULT_FOR_STAGE.get(stage, "identity")
            if parser not in parsers.PARSERS:
                d._problem(rel, line, "error", f"template {tid!r}: unknown parser {parser!r} "
                                               f"(known: {', '.join(sorted(parsers.PARSERS))})")
            generator = row.get("generator") or "llm"
            if generator not in GENERATORS:
                d._problem(rel, line, "error", f"template {tid!r}: unknown generator {generator!r} (known: llm, copy)")
            active = row.get("active", "true").lower() not in ("false", "0", "no")
            path = f"templates/{stage}/{tid}.txt"
            text = sha = None
            if path in files:
                used.add(path)
                text = _text(files, path, d)
                if text is not None:
                    sha = sha256_text(text)
                    if (err := syntax_error(text)) is not None:
                        d._problem(path, err[0], "error", f"Jinja2 syntax error: {err[1]}")
            elif generator == "llm":
                d._problem(rel, line, "warning", f"template {tid!r} is listed but {path} does not exist")
            d.templates[(stage, tid)] = Template(stage, tid, row.get("template_name", ""), parser, generator,
                                                 text, sha, active)


def _models(files: dict[str, bytes], d: Definitions, used: set[str]) -> None:
    rel = "llm_models.csv"
    if rel not in files:
        return
    used.add(rel)
    for line, row in _rows(files, rel, d, ("id", "model")):
        if row["id"] in d.models:
            d._problem(rel, line, "error", f"duplicate model id {row['id']!r}")
        elif not row["id"] or not row["model"]:
            d._problem(rel, line, "error", "empty id or model")
        else:
            d.models[row["id"]] = Model(row["id"], row["model"], row.get("provider", ""), row.get("display_name", ""))


def _replication(files: dict[str, bytes], d: Definitions, used: set[str]) -> None:
    rel = "replication_config.csv"
    if rel not in files:
        return
    used.add(rel)
    for line, row in _rows(files, rel, d, ("stage", "replicates")):
        try:
            n = int(row["replicates"])
            if n < 1:
                raise ValueError
        except ValueError:
            d._problem(rel, line, "error", f"replicates must be a positive integer, got {row['replicates']!r}")
            continue
        d.replication[row["stage"]] = n
