"""Keeping an API key out of everything recorded.

A provider may echo the key anywhere: an error body, a header (``x-request-id``),
a usage object, the text itself, whole or in part, base64-encoded (a Basic
auth header) or URL-encoded (a query string). Every string an event carries
passes through :meth:`Scrubber.event` before it is recorded, and every
fragment of eight or more characters of any of those forms is replaced.
"""

from __future__ import annotations

import base64
import re
from urllib.parse import quote

import msgspec

from chronicle.events import Event

REDACTED = "[redacted]"
#: Shorter shared runs are ordinary text ("sk-proj-" is a prefix every key has);
#: anything this long that also occurs in the key is treated as a piece of it.
FRAGMENT = 8


def _forms(key: str) -> list[str]:
    """The key as it may appear: itself, URL-encoded, and base64 at each of the three
    alignments it can have inside a longer encoded string (the stable middle only)."""
    raw = key.encode()
    forms = [key, quote(key, safe="")]
    for pad in range(3):
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            text = encode(b"\0" * pad + raw).decode().rstrip("=")
            forms.append(text[4 if pad else 0 : len(text) - 4])  # edges depend on the neighbouring bytes
    return [f for f in forms if len(f) >= FRAGMENT or f == key]


class Scrubber:
    """Replaces a key, its encodings and any 8+ character piece of them with ``[redacted]``."""

    def __init__(self, key: str | None):
        self.key = key
        pieces: set[str] = set()
        for form in _forms(key) if key else ():
            if len(form) < FRAGMENT:
                pieces.add(form)
                continue
            pieces.update(form[i : i + FRAGMENT] for i in range(len(form) - FRAGMENT + 1))
        # Overlapping matches of the pieces, found by a lookahead, cover every longer fragment.
        self._pattern = (re.compile("(?=(" + "|".join(map(re.escape, sorted(pieces))) + "))")
                         if pieces else None)

    def text(self, text: str) -> str:
        if self._pattern is None or not text:
            return text
        spans: list[list[int]] = []
        for m in self._pattern.finditer(text):
            start, end = m.start(1), m.end(1)
            if spans and start <= spans[-1][1]:
                spans[-1][1] = max(spans[-1][1], end)
            else:
                spans.append([start, end])
        if not spans:
            return text
        out, pos = [], 0
        for start, end in spans:
            out += (text[pos:start], REDACTED)
            pos = end
        out.append(text[pos:])
        return "".join(out)

    def event(self, event: Event) -> Event:
        """``event`` with every string field (and string in a list field) scrubbed."""
        if self._pattern is None:
            return event
        changes = {}
        for name in event.__struct_fields__:
            value = getattr(event, name)
            if isinstance(value, str):
                clean = self.text(value)
            elif isinstance(value, list) and any(isinstance(v, str) for v in value):
                clean = [self.text(v) if isinstance(v, str) else v for v in value]
            else:
                continue
            if clean != value:
                changes[name] = clean
        return msgspec.structs.replace(event, **changes) if changes else event
