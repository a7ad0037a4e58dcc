"""``release.frozen``: a training-set release, fixed for good.

``chronicle release NAME`` writes the export under ``data/releases/NAME/`` and
records what makes it checkable: the checkpoint it was built from (``at_seq``
and the log's ``head_hash`` there), the options (``options_json``) and every
file with its sha256 (``files_json``). A name is released once (its event id
is the name), so a release cannot be overwritten.
"""

from __future__ import annotations

from .envelope import Event


class ReleaseFrozen(Event, frozen=True, tag="release.frozen"):
    name: str
    at_seq: int
    head_hash: str
    options_json: str
    files_json: str
    author: str
