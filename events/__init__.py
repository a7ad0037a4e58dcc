"""The event catalog: every event type chronicle records, by name and version.

``CATALOG`` maps a type name to its current class. ``HISTORY`` maps
``(type, version)`` to the class that version was written with, and
``UPCASTERS`` maps ``(type, from_version)`` to a function that lifts a Polars
frame of that version to the next one. Old events are upcast on read and
never rewritten.
"""

from __future__ import annotations

from collections.abc import Callable

import polars as pl

from .annotation import Annotation, AnnotationV1, AnnotationV2, upcast_v1_to_v2, upcast_v2_to_v3
from .clock import ClockStep
from .codex import CodexLine
from .cohort import CohortDefined
from .definitions import DefinitionsSnapshot
from .envelope import ENVELOPE_FIELDS, Event
from .git import GitCommit
from .legacy import LegacySource
from .llm import (
    LlmPrompt,
    LlmPromptV1,
    LlmPromptV2,
    LlmResponse,
    LlmResponseV1,
    LlmResponseV2,
    upcast_prompt_v1_to_v2,
    upcast_prompt_v2_to_v3,
    upcast_response_v1_to_v2,
    upcast_response_v2_to_v3,
)
from .parse import ParseResult, ParseResultV1, upcast_parse_v1_to_v2
from .prices import PricesImported
from .projects import ProjectsConfigured
from .release import ReleaseFrozen
from .run import RunFinished, RunStarted
from .secrets import SecretAllowed, SecretFound, SecretsScanned
from .session import SessionLine, SessionMeta
from .source import SourceAppended, SourceError, SourceRewritten, SourceSeen

Upcaster = Callable[[pl.LazyFrame], pl.LazyFrame]

_CURRENT: tuple[type[Event], ...] = (
    SourceSeen,
    SourceAppended,
    SourceRewritten,
    SourceError,
    SessionLine,
    SessionMeta,
    CodexLine,
    GitCommit,
    DefinitionsSnapshot,
    CohortDefined,
    RunStarted,
    RunFinished,
    LlmPrompt,
    LlmResponse,
    ParseResult,
    LegacySource,
    Annotation,
    ClockStep,
    PricesImported,
    SecretFound,
    SecretAllowed,
    SecretsScanned,
    ProjectsConfigured,
    ReleaseFrozen,
)

CATALOG: dict[str, type[Event]] = {cls.type_name(): cls for cls in _CURRENT}

HISTORY: dict[tuple[str, int], type[Event]] = {
    (cls.type_name(), cls.VERSION): cls for cls in (*_CURRENT, AnnotationV1, AnnotationV2, LlmPromptV1, LlmPromptV2, LlmResponseV1, LlmResponseV2, ParseResultV1)
}

UPCASTERS: dict[tuple[str, int], Upcaster] = {
    ("annotation", 1): upcast_v1_to_v2,
    ("annotation", 2): upcast_v2_to_v3,
    ("llm.prompt", 1): upcast_prompt_v1_to_v2,
    ("llm.prompt", 2): upcast_prompt_v2_to_v3,
    ("llm.response", 1): upcast_response_v1_to_v2,
    ("llm.response", 2): upcast_response_v2_to_v3,
    ("parse.result", 1): upcast_parse_v1_to_v2,
}


class UnknownEventType(KeyError):
    """An event names a type (or version) the catalog does not know."""

    def __str__(self) -> str:
        return str(self.args[0])


def event_class(type_name: str, version: int | None = None) -> type[Event]:
    """The class for ``type_name`` at ``version`` (default: current)."""
    try:
        if version is None:
            return CATALOG[type_name]
        return HISTORY[(type_name, version)]
    except KeyError:
        known = ", ".join(sorted(CATALOG))
        at = "" if version is None else f" version {version}"
        raise UnknownEventType(f"unknown event type {type_name!r}{at}; known types: {known}") from None


def upcast(type_name: str, version: int, frame: pl.LazyFrame) -> pl.LazyFrame:
    """Lift a frame of ``type_name`` events written at ``version`` to the current version."""
    current = event_class(type_name).VERSION
    while version < current:
        frame = UPCASTERS[(type_name, version)](frame)
        version += 1
    return frame.with_columns(pl.lit(current, dtype=pl.Int32).alias("v"))


__all__ = [
    "CATALOG",
    "ENVELOPE_FIELDS",
    "HISTORY",
    "UPCASTERS",
    "Event",
    "UnknownEventType",
    "event_class",
    "upcast",
    *[cls.__name__ for cls in _CURRENT],
]
