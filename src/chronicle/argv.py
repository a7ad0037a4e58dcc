"""The command line's words before any verb runs: global options, the verb, one-line errors.

Shared by ``entry`` (which answers ``search`` before the rest of the CLI is
imported) and ``cli``; stdlib only.
"""

from __future__ import annotations

import argparse

GLOBAL_VALUES = {"--root", "--wait"}


class Parser(argparse.ArgumentParser):
    """argparse, with a bad argument reported in one line (exit 2) instead of a usage block."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (`{self.prog} --help` shows how)\n")


def verb_of(argv: list[str]) -> str | None:
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg in GLOBAL_VALUES:
            skip = True
        elif not arg.startswith("-"):
            return arg
    return None


def hoist_globals(argv: list[str]) -> list[str]:
    """``--root DIR`` and ``--wait SECONDS`` given after the verb, moved before it
    (no verb has options of those names), so they work on either side."""
    front: list[str] = []
    rest: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        name = arg.split("=", 1)[0]
        if name in GLOBAL_VALUES and rest:
            if "=" in arg:
                front.append(arg)
            else:
                front += argv[i:i + 2]
                i += 1
        else:
            rest.append(arg)
        i += 1
    return front + rest
