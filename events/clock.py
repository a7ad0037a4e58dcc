"""``clock.step``: a writer's wall clock disagreed with the log's latest time.

Events are recorded with the wall clock as it reads (seqs, not times, are the
log's order). When a writer's clock reads earlier than the latest recorded
time by more than a second, one of the two clocks stepped: the writer records
this event beside its batch so an audit of times knows where to look.
"""

from __future__ import annotations

from .envelope import Event, UtcDatetime


class ClockStep(Event, frozen=True, tag="clock.step"):
    #: The latest time recorded before (by some writer) and this writer's clock.
    latest_recorded_at: UtcDatetime
    clock_at: UtcDatetime
    #: clock_at - latest_recorded_at, in µs (negative: this clock is behind).
    step_us: int
    pid: int
    host: str
