"""How a verb is declared: every module in ``chronicle.commands`` has one
``register(verbs: Verbs)`` that adds its own verbs, and ``cli`` calls each.

A verb is a function ``run(ws, args) -> exit code`` that raises a
:class:`chronicle.errors.ChronicleError` for anything that goes wrong (``main``
prints it in one line and exits with its code) and returns 0, or 1 for a check
whose verdict is "no" (``verify`` found damage, a reparse disagrees). A group
(``ingest``, ``export``, ...) is a verb whose words are verbs of other modules
too: ``verbs.add("sessions", ..., under="ingest")``.

Building the parser imports no verb's work: a module here imports Polars,
Arrow, the store or aiohttp inside its ``run`` functions, so a verb pays only
for what it uses.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from chronicle.workspace import Workspace

Run = Callable[[Workspace, argparse.Namespace], int]
#: Whether a running daemon may run a command (see ``chronicle.served``): always, or when this holds of its arguments.
Served = bool | Callable[[argparse.Namespace], bool]


class Verbs:
    """The command line's verbs, as modules declare them."""

    def __init__(self, parser: argparse.ArgumentParser):
        self._subs: dict[str, argparse._SubParsersAction] = {
            "": parser.add_subparsers(dest="verb", metavar="VERB", required=True)}

    def add(self, name: str, run: Run, help: str, example: str, *, under: str = "", json: bool = True,
            workspace: bool = True, epilog: str | None = None, description: str | None = None,
            served: Served = False) -> argparse.ArgumentParser:
        """A verb (``under`` a group, if given) that runs ``run``; returns its parser for
        the verb's own arguments. ``json`` adds ``--json``; ``workspace=False`` lets it
        run outside a workspace; ``epilog`` replaces the one-line example. ``served``: a
        running daemon may run it for the client (its output and exit code the same), which
        asks that it read no stdin and take no path relative to the client's folder."""
        p = self._parser(name, help, example, under, epilog, description)
        p.set_defaults(func=run, command=f"{under} {name}".strip(), needs_workspace=workspace, served=served)
        if json:
            p.add_argument("--json", action="store_true", help="machine-readable JSON (Lines) output")
        return p

    def group(self, name: str, help: str, example: str, *, under: str = "") -> None:
        """A verb made of verbs (``chronicle ingest sessions``); declaring it again is a no-op."""
        path = f"{under} {name}".strip()
        if path in self._subs:
            return
        p = self._parser(name, help, example, under, None, None)
        self._subs[path] = p.add_subparsers(dest=f"{path.replace(' ', '_')}_verb", metavar="VERB", required=True)

    def _parser(self, name: str, help: str, example: str, under: str, epilog: str | None,
                description: str | None) -> argparse.ArgumentParser:
        try:
            parent = self._subs[under]
        except KeyError:
            raise KeyError(f"verb {name!r}: no group {under!r} is declared (verbs.group first)") from None
        return parent.add_parser(name, help=help, description=description or help,
                                 epilog=epilog or f"example:\n  {example}",
                                 formatter_class=argparse.RawDescriptionHelpFormatter)

    @property
    def names(self) -> list[str]:
        """The top-level verbs."""
        return list(self._subs[""].choices)
