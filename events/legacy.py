"""``legacy.source``: where an imported document came from.

``chronicle ingest legacy`` records each document of an older DayDreaming data
directory as the usual ``llm.prompt`` / ``llm.response`` / ``parse.result``
events, plus one of these naming the files it was read from, their hashes and
the source's own metadata, verbatim. The source is never modified.
"""

from __future__ import annotations

from .envelope import Event


class LegacySource(Event, frozen=True, tag="legacy.source"):
    doc_id: str
    #: The source project's id (gen_id in the gens store, the task id before it).
    task_id: str
    stage: str
    #: ``gens`` (data/gens/<stage>/<gen_id>/) or ``responses`` (the older _responses[_raw] folders).
    layout: str
    #: The data directory imported from, as given (absolute).
    root: str
    #: JSON object: role (prompt, raw, parsed, ...) -> {path (relative to root), sha256, bytes, mtime}.
    files_json: str
    #: JSON object of the source's metadata files (metadata, raw_metadata, parsed_metadata), verbatim.
    metadata_json: str = "{}"
    #: How the parent was found: ``metadata`` (parent_gen_id), ``prefix`` (task id prefix) or null.
    parent_from: str | None = None
