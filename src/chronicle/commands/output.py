"""How every verb writes to stdout: JSON Lines for scripts, plain lines for people."""

from __future__ import annotations

import json
import os
import sys


def print_json(obj: object) -> None:
    """One JSON object on one line (``--json``); anything not JSON-native is its str()."""
    sys.stdout.write(json.dumps(obj, default=str, sort_keys=True) + "\n")


def out(text: str = "") -> None:
    sys.stdout.write(text + "\n")


def terminal_width(default: int = 200) -> int:
    """Columns of the terminal stdout goes to (``default`` when it is a pipe or file)."""
    try:
        return os.get_terminal_size(sys.stdout.fileno()).columns
    except (OSError, ValueError):
        return default
