"""Codex CLI: session ("rollout") files, read into ``codex.line`` events.

Codex writes ``$CODEX_HOME/sessions/YYYY/MM/DD/rollout-<local time>-<uuid>.jsonl``
(``CODEX_HOME`` defaults to ``~/.codex``): one JSON object per line, the
envelope ``{timestamp, type, payload}`` (from 0.15x also ``ordinal``), and the
first record is always a ``session_meta``. Copied files do not keep that name
or layout, so a file is recognised by that first record, never by its name.
See ``../shared/corpus/codex/NOTES.md`` for the record types and the token
counting rule (``projections/_codex.py``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgspec
import pyarrow as pa

from chronicle.events import CodexLine
import chronicle.ingest.sources.lines as lines
from chronicle.ingest.sources.base import FirstLine, TranscriptSource
from chronicle.ingest.sources.lines import Header
from chronicle.store import codec

KIND = "codex-rollout"

# Token counts are int64 columns: a larger number fails the line's decode, so
# the line is kept with an error naming the field instead of poisoning the log.
Int64 = codec.Int64


class _Usage(msgspec.Struct):
    input_tokens: Int64 | None = None
    cached_input_tokens: Int64 | None = None
    output_tokens: Int64 | None = None
    reasoning_output_tokens: Int64 | None = None
    total_tokens: Int64 | None = None


class _Info(msgspec.Struct):
    total_token_usage: _Usage | None = None
    last_token_usage: _Usage | None = None


class _Payload(msgspec.Struct):
    # Fields whose type varies between record types are read as Any and kept only when strings.
    type: Any = None
    id: Any = None
    cwd: Any = None
    cli_version: Any = None
    originator: Any = None
    model_provider: Any = None
    model: Any = None
    turn_id: Any = None
    info: _Info | None = None


class _Record(msgspec.Struct):
    timestamp: Any = None
    type: Any = None
    payload: msgspec.Raw = msgspec.Raw()  # decoded below only when an object


_RECORD = msgspec.json.Decoder(_Record)
_PAYLOAD = msgspec.json.Decoder(_Payload)
_NO_PAYLOAD = _Payload()
_NO_USAGE = (None,) * 5


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _usage(u: _Usage | None) -> tuple:
    if u is None:
        return _NO_USAGE
    return u.input_tokens, u.cached_input_tokens, u.output_tokens, u.reasoning_output_tokens, u.total_tokens


def _row(line) -> tuple:
    """The header columns of one line (order of COLUMNS), from its bytes or a view of them."""
    r = _RECORD.decode(line)
    raw = r.payload
    p = _PAYLOAD.decode(raw) if len(raw) and memoryview(raw)[0] == 0x7B else _NO_PAYLOAD  # an object
    kind = _str(r.type)
    meta = kind == "session_meta"
    info = p.info if kind == "event_msg" else None
    return (
        kind, _str(p.type), _str(r.timestamp),
        _str(p.id) if meta else None,
        _str(p.cwd) if meta or kind == "turn_context" else None,
        _str(p.cli_version) if meta else None,
        _str(p.originator) if meta else None,
        _str(p.model_provider) if meta else None,
        _str(p.model) if kind == "turn_context" else None,
        _str(p.turn_id),
        *_usage(info.total_token_usage if info else None),
        *_usage(info.last_token_usage if info else None),
    )


COLUMNS = (
    "record_type", "payload_type", "timestamp", "session_id", "cwd", "cli_version", "originator", "model_provider",
    "model", "turn_id",
    "total_input_tokens", "total_cached_input_tokens", "total_output_tokens", "total_reasoning_output_tokens",
    "total_tokens",
    "last_input_tokens", "last_cached_input_tokens", "last_output_tokens", "last_reasoning_output_tokens",
    "last_total_tokens",
)
HEADER = Header(COLUMNS, _row)


class Codex(TranscriptSource):
    agent = "codex"
    line_event = CodexLine
    line_kinds = (KIND,)
    session_kind = KIND
    by_content = True
    roots_help = "$CODEX_HOME/sessions (default ~/.codex/sessions)"

    def default_roots(self, env: Mapping[str, str]) -> list[Path]:
        home = env.get("CODEX_HOME") or str(Path(env.get("HOME", str(Path.home()))) / ".codex")
        return [Path(home).expanduser() / "sessions"]

    def classify(self, path: Path, first: FirstLine) -> str | None:
        if path.name.endswith(".jsonl") and first.record_type == "session_meta":
            return KIND
        return None

    def line_table(self, path: str, generation: int, offset: int, line_no: int, data: bytes) -> pa.Table:
        return lines.table(CodexLine, HEADER, path, generation, offset, line_no, data)
