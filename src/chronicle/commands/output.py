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


def command_name() -> str:
    """How to type `chronicle` here: the bare name when it is the one on PATH, else the
    path of the one running (``.venv/bin/chronicle`` after ``make demo``)."""
    import shutil
    from pathlib import Path

    running = Path(sys.argv[0]) if sys.argv and sys.argv[0] else None
    if running is None or running.name != "chronicle":
        return "chronicle"
    on_path = shutil.which("chronicle")
    if on_path and Path(on_path).resolve() == running.resolve():
        return "chronicle"
    try:
        return str(running.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(running.resolve())


def write_rows(df, args) -> bool:
    """``df`` as JSON Lines (``--json``) or CSV (``--csv``, nested values as JSON text;
    bytes, such as a line's ``raw``, as base64 in both); False when neither was asked for
    (the caller prints a table for people)."""
    if getattr(args, "json", False) or getattr(args, "csv", False):
        import polars as pl

        df = df.with_columns(pl.col(pl.Binary).bin.encode("base64"))
    if getattr(args, "json", False):
        sys.stdout.write(df.write_ndjson())
    elif getattr(args, "csv", False):
        from chronicle.projection import csv_ready

        sys.stdout.write(csv_ready(df).write_csv())
    else:
        return False
    return True
