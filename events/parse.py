"""``parse.result``: what a named, versioned parser made of a response."""

from __future__ import annotations

from .envelope import Event


class ParseResult(Event, frozen=True, tag="parse.result"):
    doc_id: str
    parser: str
    parser_version: int
    status: str
    parsed: str | None = None
    score: float | None = None
    scale: float | None = None
    reason: str | None = None
