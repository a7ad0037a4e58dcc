"""Group commit for an asyncio program: many coroutines record, one thread appends.

``await recorder.record(events)`` returns once the events are durable. Events
recorded while an append is in progress go out together in the next one, so
64 concurrent calls cost a few fsyncs, not 64, and the event loop never
blocks on the disk. Each caller's events stay together in one batch, so a
response and its parse result are all or nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from chronicle.events import Event
from chronicle.experiment.scrubbing import Scrubber
from chronicle.store import EventLog, InvalidEvent


class Recorder:
    def __init__(self, log: EventLog, scrubber: Scrubber | None = None):
        self.log = log
        self.scrubber = scrubber
        self._pending: list[tuple[Sequence[Event], asyncio.Future]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None

    async def __aenter__(self) -> Recorder:
        self._task = asyncio.create_task(self._flush_forever())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass

    async def record(self, events: Sequence[Event]) -> None:
        if self.scrubber is not None:  # the one door every recorded string passes
            events = [self.scrubber.event(e) for e in events]
        future = asyncio.get_running_loop().create_future()
        self._pending.append((events, future))
        self._wake.set()
        await future

    async def _flush_forever(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            batch, self._pending = self._pending, []
            if not batch:
                continue
            try:
                await asyncio.to_thread(self.log.append, [e for events, _ in batch for e in events])
            except InvalidEvent:  # one caller's events: the others must not pay for them
                for events, future in batch:
                    await self._append_alone(events, future)
            except Exception as exc:  # every waiter learns why its events were not recorded
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
            else:
                for _, future in batch:
                    if not future.done():
                        future.set_result(None)

    async def _append_alone(self, events: Sequence[Event], future: asyncio.Future) -> None:
        try:
            await asyncio.to_thread(self.log.append, list(events))
        except Exception as exc:
            if not future.done():
                future.set_exception(exc)
        else:
            if not future.done():
                future.set_result(None)
