"""Named, versioned response parsers.

A parser turns a response text into a :class:`Parsed` outcome. It never
raises on bad input: a failure is ``status="parse_error"`` with a reason, so a
run goes on and the failure is recorded as a ``parse.result`` like any other.
The name and version of the parser are recorded on every result; bump
``version`` whenever a parser's output for some input changes.

Evaluation parsers:

- ``score`` (recommended): the judge's final overall score and its scale,
  read from labelled score lines anywhere in the response (the last one
  labelled ``SCORE``/``Final``/``Total``/``Overall`` wins; a heading such as
  ``Final Score`` may carry its value on the next line). Bare ``Score:`` lines
  are sub-scores and only count when nothing stronger exists.
- ``in_last_line`` and ``complex``: faithful ports of the DayDreaming project's
  documented rules, so its templates run unchanged (scores on a 0..9 scale).

Draft parsers: ``essay_block``, ``essay_block_lenient``, ``essay_idea_last``
and ``identity``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import msgspec


class Parsed(msgspec.Struct, frozen=True):
    status: str  # "ok" | "parse_error"
    parsed: str | None = None
    score: float | None = None
    scale: float | None = None
    reason: str | None = None


def _ok(parsed: str, score: float | None = None, scale: float | None = None, reason: str | None = None) -> Parsed:
    return Parsed("ok", parsed, score, scale, reason)


def _fail(reason: str) -> Parsed:
    return Parsed("parse_error", None, None, None, reason)


@dataclass(frozen=True)
class Parser:
    name: str
    version: int
    stage: str  # the stage whose responses it reads: "draft" (also essays) or "evaluation"
    func: Callable[[str], Parsed]
    summary: str

    def __call__(self, text: str | None) -> Parsed:
        if text is None or not text.strip():
            return _fail("empty_response")
        return self.func(text)


class UnknownParser(KeyError):
    def __str__(self) -> str:
        return str(self.args[0])


# --- evaluation: score -------------------------------------------------------

_NUM = r"(\d+(?:\.\d+)?)"
_VALUE = re.compile(_NUM + r"(?:\s*(?:/|out of)\s*" + _NUM + r")?", re.I)
_LABEL = re.compile(r"^(?P<label>(?:(?:final|total|overall)\s+)?score)\b\s*[:=\-]?\s*(?P<rest>.*)$", re.I)
_MARKUP = re.compile(r"[*#_`>]+")
_BULLET = re.compile(r"^\s*(?:[-+•]|\d+[.)])\s+")


def _clean(line: str) -> str:
    return _BULLET.sub("", _MARKUP.sub("", line)).strip().rstrip(":").strip()


def _value(rest: str) -> tuple[float, float | None] | None:
    """The score in what follows a label: the first value, or the last after 'rounded'/an arrow."""
    found = list(_VALUE.finditer(rest))
    if not found:
        return None
    m = found[-1] if re.search(r"round|→|->", rest, re.I) else found[0]
    if m.start() > 0 and re.search(r"[A-Za-z]", rest[: m.start()]) and "round" not in rest.lower() and "→" not in rest:
        return None  # "Score: see above, 3 things ..." is prose, not a value
    return float(m.group(1)), (float(m.group(2)) if m.group(2) else None)


def _score(text: str) -> Parsed:
    lines = [_clean(line) for line in text.splitlines()]
    strong: list[tuple[float, float | None, str]] = []
    weak: list[tuple[float, float | None, str]] = []
    for i, line in enumerate(lines):
        m = _LABEL.match(line)
        if not m:
            continue
        label, rest = m.group("label"), m.group("rest")
        is_strong = label.lower() != "score" or label == "SCORE"
        value = _value(rest)
        if value is None and not rest:  # a heading: the value is on the next non-empty line
            following = [ln for ln in lines[i + 1 : i + 4] if ln][:1]
            if following and not _LABEL.match(following[0]):
                value = _value(following[0])
        if value is not None:
            (strong if is_strong else weak).append((value[0], value[1], lines[i]))
    chosen = strong or weak
    if not chosen:
        return _fail("no_final_score")
    score, scale, line = chosen[-1]
    if scale is None:  # "SCORE: 7" after "Rounded to 7/10": take the scale the judge used last
        scale = next((s for _, s, _ in reversed(chosen) if s is not None), None)
    if scale is not None and not 0 <= score <= scale:
        return _fail(f"out_of_range: {score:g}/{scale:g} in {line!r}")
    return _ok(f"{score:g}", score, scale, None if strong else "only sub-score labels found; took the last")


# --- evaluation: the DayDreaming project's rules --------------------------------

_ILL_EXACT = re.compile(r"^SCORE:\s*" + _NUM + r"$", re.I)
_ILL_THREE = re.compile(r"^(?:(?:final|total)\s+)?score\s*:?\s*(?:(\d)(\d)(\d)|(\d)\s*,\s*(\d)\s*,\s*(\d))$", re.I)
_ILL_PLAIN = re.compile(r"^(?:(?:final|total)\s+)?(?:score)\s*:?\s*" + _NUM + r"$", re.I)


def _in_range_0_9(score: float, how: str) -> Parsed:
    if not 0 <= score <= 9:
        return _fail(f"out_of_range: {score:g}")
    return _ok(f"{score:g}", score, 9.0, how)


def _in_last_line(text: str) -> Parsed:
    last3 = [ln.replace("*", "").replace("#", "").strip() for ln in text.splitlines() if ln.strip()][-3:]
    # Three digits first: "Score: 456" is three sub-scores, not a score of 456.
    for line in reversed(last3):
        if m := _ILL_THREE.match(line):
            digits = [int(d) for d in m.groups() if d is not None]
            return _in_range_0_9(sum(digits) / 3, "three_digit_mean")
    for line in reversed(last3):
        if m := _ILL_EXACT.match(line):
            return _in_range_0_9(float(m.group(1)), "score_line")
    for line in reversed(last3):
        if m := _ILL_PLAIN.match(line):
            return _in_range_0_9(float(m.group(1)), "plain_number")
    return _fail("no_score_last_lines")


_CX_FRACTION = re.compile(r"score\s*:?\s*" + _NUM + r"\s*/\s*" + _NUM, re.I)
_CX_PLAIN = re.compile(r"score\s*:?\s*" + _NUM, re.I)


def _complex(text: str) -> Parsed:
    tail = "\n".join(text.splitlines()[-30:])
    fractions = list(_CX_FRACTION.finditer(tail))
    if fractions:
        num, den = float(fractions[-1].group(1)), float(fractions[-1].group(2))
        if den == 0:
            return _fail("out_of_range: denominator 0")
        return _in_range_0_9(num / den * 10, "fraction")
    plain = list(_CX_PLAIN.finditer(tail))
    if plain:
        return _in_range_0_9(float(plain[-1].group(1)), "plain_number")
    return _fail("no_score_last_lines")


# --- drafts ------------------------------------------------------------------

_ESSAY = re.compile(r"<essay>(.*?)</essay>", re.S | re.I)
_ESSAY_OPEN = re.compile(r"<essay>(.*)$", re.S | re.I)
_IDEA = re.compile(r"<essay-idea\b[^>]*>(.*?)</essay-idea>", re.S | re.I)


def _essay_block(text: str) -> Parsed:
    blocks = [b.strip() for b in _ESSAY.findall(text) if b.strip()]
    return _ok(blocks[-1]) if blocks else _fail("no_essay_block: no non-empty <essay>...</essay>")


def _essay_block_lenient(text: str) -> Parsed:
    blocks = [b.strip() for b in _ESSAY.findall(text) if b.strip()]
    if blocks:
        return _ok(blocks[-1])
    if (m := _ESSAY_OPEN.search(text)) and m.group(1).strip():
        return _ok(m.group(1).strip(), reason="unclosed <essay>: took the rest")
    return _ok(text.strip(), reason="no <essay> block: took the whole response")


def _essay_idea_last(text: str) -> Parsed:
    ideas = [b.strip() for b in _IDEA.findall(text) if b.strip()]
    return _ok(ideas[-1]) if ideas else _fail("no_essay_idea: no non-empty <essay-idea>...</essay-idea>")


def _identity(text: str) -> Parsed:
    return _ok(text)


PARSERS: dict[str, Parser] = {p.name: p for p in (
    Parser("score", 1, "evaluation", _score, "final overall score and scale from labelled score lines (recommended)"),
    Parser("in_last_line", 1, "evaluation", _in_last_line, "DayDreaming rule: SCORE in the last 3 lines, 0..9"),
    Parser("complex", 1, "evaluation", _complex, "DayDreaming older rule: last score in 30 lines, fractions first, 0..9"),
    Parser("essay_block", 1, "draft", _essay_block, "the last <essay>...</essay> block"),
    Parser("essay_block_lenient", 1, "draft", _essay_block_lenient, "the essay block, else the whole response"),
    Parser("essay_idea_last", 1, "draft", _essay_idea_last, "the last <essay-idea> block"),
    Parser("identity", 1, "draft", _identity, "the response as it is"),
)}

#: The parser a stage uses when its template's CSV names none.
DEFAULT_FOR_STAGE = {"draft": "identity", "essay": "identity", "evaluation": "score"}


def get(name: str) -> Parser:
    try:
        return PARSERS[name]
    except KeyError:
        raise UnknownParser(f"unknown parser {name!r}; known parsers: {', '.join(sorted(PARSERS))}") from None
