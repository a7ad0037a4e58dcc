"""Labels: what a person says of an episode's reaction, a tool call's action class or a
session-commit link, recorded as an ``annotation`` event (author, time, taxonomy version).

A label is checked before anything is written: the episode, tool call, session and
commit must be in the tables (brought up to date first), and the value must be in
the taxonomy (``reaction.v1``'s labels, ``action.v1``'s classes, ``yes``/``no`` for a
link). A batch (a command, an import file) is appended all at once or not at all.
"""

from __future__ import annotations

import getpass
import hashlib
import os
from pathlib import Path

import msgspec
import polars as pl

from chronicle.errors import UsageError
from chronicle.events import Annotation

#: The tables a label is checked against (their projections are brought up to date first).
TABLES = ["episodes", "tool_calls", "sessions", "commits", "labels"]
LINK_VALUES = ("yes", "no")


class LabelError(UsageError):
    """A label names what is not recorded, or a value outside its taxonomy; nothing was written."""


class Label(msgspec.Struct, frozen=True, kw_only=True):
    """One label as given: ``kind`` (episode, action, link), ``id`` (an episode id, a tool call id,
    or ``SESSION@SHA``), ``label`` (the value), and who gave it, with a note."""

    kind: str
    id: str
    label: str | None = None
    note: str | None = None
    author: str | None = None


#: What a label of each kind says: an episode's reaction, a tool call's action class, a link's yes or no.
KEYS = {"episode": "reaction", "action": "action", "link": "link"}


def standing(labels: pl.DataFrame, kind: str, id_name: str) -> pl.DataFrame:
    """The label standing on each target of ``kind`` (the ``labels`` table keeps the latest): the
    target's id as ``id_name``, ``label`` and ``label_author``."""
    return labels.filter((pl.col("kind") == kind) & (pl.col("key") == KEYS[kind])).select(
        pl.col("target_id").alias(id_name), pl.col("value").alias("label"), pl.col("author").alias("label_author"))


def labelled_actions(tables: dict[str, pl.DataFrame]) -> pl.DataFrame:
    """Each labelled tool call (``tool_calls`` columns), its ``label``, and the class the action
    taxonomy's rules give it (``predicted``)."""
    from chronicle.projections.episodes import action_class

    calls = tables["tool_calls"].join(standing(tables["labels"], "action", "tool_use_id"), on="tool_use_id")
    return calls.with_columns(pl.Series("predicted", [action_class(t, c) for t, c in
                                                      calls.select("tool_name", "command").iter_rows()],
                                        dtype=pl.String))


def default_author() -> str:
    """$CHRONICLE_AUTHOR, else the login name."""
    return os.environ.get("CHRONICLE_AUTHOR") or getpass.getuser()


def reaction_values() -> list[str]:
    from chronicle.projections.episodes import REACTION

    return [c["label"] for c in REACTION["classes"]] + [REACTION["default"]["label"], "none"]


def action_values() -> list[str]:
    from chronicle.projections.episodes import ACTION

    return [r["class"] for r in ACTION["rules"]] + [ACTION["default"]]


class Checker:
    """Resolves and checks labels against one read of the tables."""

    def __init__(self, tables: dict[str, pl.DataFrame]):
        self.episodes = set(tables["episodes"]["episode_id"].to_list())
        self.tools = set(tables["tool_calls"]["tool_use_id"].drop_nulls().to_list())
        self.sessions = sorted(tables["sessions"]["session_id"].to_list())
        self.commits = sorted(tables["commits"]["sha"].to_list())

    def event(self, given: Label, where: str, author: str, event_id: str = "") -> Annotation:
        """The annotation for ``given``; ``where`` names it in an error (a command, a file's line)."""
        from chronicle.projections.episodes import ACTION_TAXONOMY, REACTION_TAXONOMY

        if given.label is None:
            raise LabelError(f"{where}: no label given")
        if given.kind == "episode":
            if given.id not in self.episodes:
                raise LabelError(f"{where}: no episode {given.id!r} (see `chronicle show episodes`)")
            allowed, taxonomy = reaction_values(), REACTION_TAXONOMY
            target = given.id
        elif given.kind == "action":
            if given.id not in self.tools:
                raise LabelError(f"{where}: no tool call {given.id!r} (an action is a tool call: tool_calls.tool_use_id)")
            allowed, taxonomy = action_values(), ACTION_TAXONOMY
            target = given.id
        elif given.kind == "link":
            session, _, commit = given.id.partition("@")
            target = f"{self.session(session, where)}@{self.commit(commit, where)}"
            allowed, taxonomy = list(LINK_VALUES), None
        else:
            raise LabelError(f"{where}: unknown kind {given.kind!r} (episode, action or link)")
        if given.label not in allowed:
            in_what = f"taxonomy {taxonomy}" if taxonomy else "a link label"
            raise LabelError(f"{where}: {given.label!r} is not in {in_what} (one of: {', '.join(allowed)})")
        return Annotation(stream=f"{given.kind}:{target}", event_id=event_id, target=f"{given.kind}:{target}", key=KEYS[given.kind],
                          value=given.label, author=given.author or author, note=given.note, taxonomy=taxonomy)

    def session(self, text: str, where: str) -> str:
        return _unique("session", text, self.sessions, where)

    def commit(self, text: str, where: str) -> str:
        if len(text) < 7:
            raise LabelError(f"{where}: commit {text!r}: give at least 7 characters of its hash")
        return _unique("commit", text, self.commits, where)


def _unique(kind: str, text: str, known: list[str], where: str) -> str:
    found = [k for k in known if k.startswith(text)] if text else []
    if text in found:
        return text
    if len(found) == 1:
        return found[0]
    if not found:
        raise LabelError(f"{where}: no {kind} {text!r} is recorded")
    raise LabelError(f"{where}: {text!r} starts {len(found)} {kind} ids ({', '.join(found[:5])}): give more of it")


def read_import(path: Path, checker: Checker, author: str) -> tuple[list[Annotation], int]:
    """Every answered line of a JSON Lines file (``chronicle review --json``, with ``label`` filled
    in) as an annotation, and how many lines were left unanswered (``label`` null). The first bad
    line is named and nothing is returned. Each event's id is derived from the file's bytes and the
    line's number, so importing the same file again records nothing new."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise LabelError(f"{path}: cannot be read: {exc.strerror or exc}") from None
    events, unanswered = [], 0
    file_digest = hashlib.sha256(data).hexdigest()
    decoder = msgspec.json.Decoder(Label)
    for n, line in enumerate(data.splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path}:{n}"
        try:
            given = decoder.decode(line)
        except msgspec.ValidationError as exc:
            raise LabelError(f"{where}: {exc}") from None
        except msgspec.DecodeError as exc:
            raise LabelError(f"{where}: not a JSON object: {exc}") from None
        if given.label is None:
            unanswered += 1
            continue
        digest = hashlib.sha256(f"{file_digest}\0{n}".encode()).hexdigest()[:24]
        events.append(checker.event(given, where, author, event_id=f"label-{digest}"))
    return events, unanswered
