"""Events in and out as JSON Lines (the `append` input and `log --json` output).

Bytes fields travel as base64 and times as RFC 3339 with a timezone, as
msgspec encodes them. ``seq`` and ``recorded_at`` are assigned by the store and
may not be given.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import msgspec

from chronicle.events import Event, UnknownEventType, event_class
from chronicle.store import InvalidEvent, codec

_ASSIGNED = ("seq", "recorded_at")
_AT = re.compile(r"^(?P<msg>.*?)(?: - at `\$\.(?P<field>[^`\[]+)[^`]*`)?$")
_MISSING = re.compile(r"missing required field `(?P<field>[^`]+)`")


def parse_line(line: bytes, line_no: int) -> Event:
    """One JSON object -> its event. InvalidEvent names the line and field."""
    try:
        obj = msgspec.json.decode(line)
    except msgspec.DecodeError as exc:
        raise InvalidEvent(f"line {line_no}: not valid JSON: {exc}") from None
    except RecursionError:
        raise InvalidEvent(f"line {line_no}: JSON nested too deeply") from None
    if not isinstance(obj, dict):
        raise InvalidEvent(f"line {line_no}: expected a JSON object, got {type(obj).__name__}")
    for key in ("type", "stream"):
        if not isinstance(obj.get(key), str) or not obj[key]:
            raise InvalidEvent(f"line {line_no}: field '{key}': required, a non-empty string", field=key)
    for key in _ASSIGNED:
        if key in obj:
            raise InvalidEvent(f"line {line_no}: field '{key}': assigned by the log, may not be given", field=key)
    try:
        cls = event_class(obj["type"])
    except UnknownEventType as exc:
        raise InvalidEvent(f"line {line_no}: field 'type': {exc}", field="type") from None
    version = obj.pop("v", cls.VERSION)
    if version != cls.VERSION:
        raise InvalidEvent(f"line {line_no}: field 'v': only the current version {cls.VERSION} of {cls.type_name()} can be appended", field="v")
    unknown = sorted(set(obj) - set(cls.__struct_fields__) - {"type"})
    if unknown:
        raise InvalidEvent(f"line {line_no}: field '{unknown[0]}': not a field of {cls.type_name()}", field=unknown[0])
    try:
        msgspec.convert(obj, codec.checked_class(cls))  # integers within int64, as the columns hold them
        event = msgspec.convert(obj, cls)
        codec.encode(event)  # what the log will check: times in range, *_json fields JSON
        return event
    except InvalidEvent as exc:
        raise InvalidEvent(f"line {line_no}: {exc}", field=exc.field) from None
    except RecursionError:
        raise InvalidEvent(f"line {line_no}: a value is nested too deeply") from None
    except msgspec.ValidationError as exc:
        text = str(exc)
        missing = _MISSING.search(text)
        if missing:
            field = missing["field"]
            raise InvalidEvent(f"line {line_no}: field '{field}': required by {cls.type_name()}", field=field) from None
        m = _AT.match(text)
        field = m["field"] if m and m["field"] else None
        where = f"field '{field}': " if field else ""
        raise InvalidEvent(f"line {line_no}: {where}{m['msg'] if m else text}", field=field) from None


def parse_lines(lines: Iterable[bytes]) -> list[Event]:
    """Parse every non-blank line; the first bad one raises (nothing is appended)."""
    events = []
    for n, line in enumerate(lines, start=1):
        if line.strip():
            events.append(parse_line(line, n))
    return events


_ENC = msgspec.json.Encoder()


def dump(event: Event) -> bytes:
    data = msgspec.to_builtins(event)
    data["v"] = type(event).VERSION
    return _ENC.encode(data)
