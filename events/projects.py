"""``projects.configured``: the ``[projects]`` section of chronicle.toml, as it stood.

The ``projects`` table is a projection, so what it reads must be in the log:
chronicle records the section whenever it differs from the last one recorded
(``chronicle.projects.record_configuration``). A replay as of an earlier seq
sees the registry as it was then. ``projects_json`` maps a project's id to its
``name``, ``roots``, ``repos`` and ``status``; ``{}`` when the section is gone.
"""

from __future__ import annotations

from .envelope import Event


class ProjectsConfigured(Event, frozen=True, tag="projects.configured"):
    projects_json: str
