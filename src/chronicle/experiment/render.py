"""Prompt rendering: Jinja2 with StrictUndefined, so a missing variable is an error, never ''."""

from __future__ import annotations

import hashlib
from functools import lru_cache
from typing import TYPE_CHECKING

import jinja2

if TYPE_CHECKING:
    from chronicle.experiment.definitions import Definitions

_ENV = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=False)


class RenderError(ValueError):
    """A template failed to render (names the template and the reason)."""


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def syntax_error(text: str) -> tuple[int, str] | None:
    """(line, message) of a Jinja2 syntax error in ``text``, or None."""
    try:
        _ENV.parse(text)
    except jinja2.TemplateSyntaxError as exc:
        return exc.lineno, exc.message or "syntax error"
    return None


@lru_cache(maxsize=256)
def _compiled(text: str) -> jinja2.Template:
    """Compiling a template costs ~100x rendering it; a run renders a few templates thousands of times."""
    return _ENV.from_string(text)


def render(template_id: str, text: str, context: dict) -> str:
    try:
        return _compiled(text).render(**context)
    except jinja2.TemplateError as exc:
        raise RenderError(f"template {template_id}: {type(exc).__name__}: {exc}") from None


def context_for(stage: str, *, concepts: list[dict] | None = None, parent_text: str | None = None) -> dict:
    """What each stage's templates may use.

    draft: ``concepts`` (each with ``concept_id``, ``name``, ``content``);
    essay: ``links_block`` and ``draft_block`` (the draft's parsed text);
    evaluation: ``response`` (the essay's parsed text).
    """
    if stage == "draft":
        return {"concepts": concepts or []}
    if stage == "essay":
        return {"links_block": parent_text, "draft_block": parent_text}
    return {"response": parent_text}


def prompt_text(d: Definitions, stage: str, template_id: str, concept_ids: list[str], level: str,
                parent_text: str | None) -> str:
    """The prompt a stage sends: a rendered template, or the parent's text for a ``copy`` template.

    The runner and ``chronicle audit prompt`` both call this, so an audit re-renders exactly as a run did.
    """
    t = d.templates[(stage, template_id)]
    if stage == "draft":
        concepts = [{"concept_id": c, "name": d.concepts[c], "content": d.descriptions[(level, c)]}
                    for c in concept_ids]
        context = context_for("draft", concepts=concepts)
    else:
        context = context_for(stage, parent_text=parent_text)
    if t.generator == "copy":
        return context["links_block"] if stage == "essay" else context["response"]
    if t.text is None:
        raise RenderError(f"template {template_id}: no file templates/{stage}/{template_id}.txt")
    return render(template_id, t.text, context)
