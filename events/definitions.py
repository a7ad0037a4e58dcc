"""``definitions.snapshot``: one experiment-definition file, by content hash."""

from __future__ import annotations

from .envelope import Event


class DefinitionsSnapshot(Event, frozen=True, tag="definitions.snapshot"):
    path: str
    kind: str
    sha256: str
    content: bytes
