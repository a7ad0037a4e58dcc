"""Reading message content: tool inputs, and which user records a human wrote."""

from __future__ import annotations

import json
from typing import Any

import msgspec

#: Text the harness injects into user records; such a record is not a human message.
HARNESS_PREFIXES = (
    "<task-notification>", "<local-command-stdout>", "<local-command-stderr>", "<local-command-caveat>",
    "<system-reminder>", "Caveat: The messages below were generated", "<bash-stdout>", "<bash-stderr>",
)
SUMMARY_LIMIT = 200


def tool_input(raw: msgspec.Raw) -> dict[str, Any]:
    if not len(raw):
        return {}
    try:
        value = msgspec.json.decode(raw)
    except msgspec.DecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def input_summary(name: str, inp: dict[str, Any]) -> str:
    """A short readable summary of a tool call's input."""
    for key in ("command", "file_path", "notebook_path", "pattern", "url", "query", "description", "prompt"):
        value = inp.get(key)
        if isinstance(value, str) and value:
            text = value
            break
    else:
        if name == "TodoWrite" and isinstance(inp.get("todos"), list):
            text = f"{len(inp['todos'])} todos"
        else:
            text = json.dumps(inp, sort_keys=True, ensure_ascii=False)
    text = " ".join(text.split())
    return text if len(text) <= SUMMARY_LIMIT else text[: SUMMARY_LIMIT - 1] + "…"


def human_text(texts: list[str], kinds: list[str], row: dict) -> str | None:
    """The text of a user record a person typed, or None for tool results,
    harness-injected text (isMeta, compact summaries, notifications) and
    prompts a parent agent gave a subagent (sidechain)."""
    if row.get("is_meta") or row.get("is_compact_summary") or row.get("is_sidechain"):
        return None
    if "tool_result" in kinds or not texts:
        return None
    text = "\n".join(texts).strip()
    if not text or text.startswith(HARNESS_PREFIXES):
        return None
    return text
