"""``run.*``: an experiment run's start and end."""

from __future__ import annotations

from .envelope import Event


class RunStarted(Event, frozen=True, tag="run.started"):
    run_id: str
    cohort_id: str
    provider: str
    #: JSON object of the options the run was started with (never secrets).
    options_json: str


class RunFinished(Event, frozen=True, tag="run.finished"):
    run_id: str
    status: str
    done: int
    failed: int
