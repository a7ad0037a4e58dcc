"""``cohort.defined``: a cohort's full, deterministic membership."""

from __future__ import annotations

from .envelope import Event


class CohortDefined(Event, frozen=True, tag="cohort.defined"):
    cohort_id: str
    spec_sha256: str
    spec: str
    #: JSON list of membership rows.
    membership_json: str
