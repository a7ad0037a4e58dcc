"""``codex.line``: Codex CLI session ("rollout") files, kept byte for byte.

One event per line of ``$CODEX_HOME/sessions/YYYY/MM/DD/rollout-*.jsonl``,
holding the line's exact bytes (newline included) plus the fields the
projections need, read at ingest from the envelope ``{timestamp, type,
payload}``. ``session_id``, ``cli_version`` and ``originator`` are set on the
``session_meta`` line only (the file's first); ``model`` on ``turn_context``
lines; the token columns on ``event_msg``/``token_count`` lines that carry
``info`` (``total_*`` the running total of the file, ``last_*`` the latest
request). ``error`` says what could not be read; the bytes are kept either way.
"""

from __future__ import annotations

from .session import TranscriptLine


class CodexLine(TranscriptLine, frozen=True, tag="codex.line"):
    record_type: str | None = None
    payload_type: str | None = None
    timestamp: str | None = None
    session_id: str | None = None
    cwd: str | None = None
    cli_version: str | None = None
    originator: str | None = None
    model_provider: str | None = None
    model: str | None = None
    turn_id: str | None = None
    total_input_tokens: int | None = None
    total_cached_input_tokens: int | None = None
    total_output_tokens: int | None = None
    total_reasoning_output_tokens: int | None = None
    total_tokens: int | None = None
    last_input_tokens: int | None = None
    last_cached_input_tokens: int | None = None
    last_output_tokens: int | None = None
    last_reasoning_output_tokens: int | None = None
    last_total_tokens: int | None = None
    error: str | None = None
