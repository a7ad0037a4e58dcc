"""The envelope every event carries, and the rules for type-specific fields.

An event class is a frozen msgspec Struct that subclasses :class:`Event` with a
``tag`` (its dotted type name) and, when its schema changes, a new ``VERSION``.
Type-specific fields become typed Parquet columns, so they are restricted to
scalars Arrow and Polars handle natively (see ``FIELD_TYPES``); a free-form
object from a source is kept as a JSON string field whose name ends in
``_json``.
"""

from __future__ import annotations

from datetime import datetime
from functools import cache
from typing import Annotated, ClassVar

import msgspec

#: Envelope fields, in column order. ``seq`` and ``recorded_at`` are assigned
#: by the store at commit; ``event_id`` is generated when the caller gives none.
ENVELOPE_FIELDS = ("seq", "event_id", "type", "v", "stream", "recorded_at")

#: Datetime fields must carry a timezone: a naive time has no canonical
#: encoding, so it could not be hashed the same way twice.
UtcDatetime = Annotated[datetime, msgspec.Meta(tz=True)]

#: Every event belongs to a stream. The constraint lives in the type so the
#: store's one typed decode per batch checks it along with everything else.
StreamName = Annotated[str, msgspec.Meta(min_length=1)]


class Event(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    """Base of every event: the envelope. Subclasses add typed fields."""

    stream: StreamName
    event_id: str = ""
    seq: int = 0
    recorded_at: UtcDatetime | None = None

    #: Schema version of this class. Bump it (and register an upcaster from
    #: the previous class) whenever a field is added, removed or retyped.
    VERSION: ClassVar[int] = 1

    @classmethod
    def type_name(cls) -> str:
        return cls.__struct_config__.tag  # type: ignore[return-value]

    @classmethod
    def payload_fields(cls) -> tuple[str, ...]:
        """Type-specific field names (everything that is not envelope)."""
        return _payload_fields(cls)



@cache
def _payload_fields(cls: type[Event]) -> tuple[str, ...]:
    return tuple(f for f in cls.__struct_fields__ if f not in ENVELOPE_FIELDS)
