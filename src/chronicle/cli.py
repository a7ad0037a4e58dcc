"""`chronicle <verb>`: the command line.

Exit codes: 0 success; 1 a check failed (verify found damage, a projection
failed); 2 bad usage or bad input (nothing was written); 3 the workspace or
storage is unusable (not initialised, disk full, corruption). Every error a
user sees is a :class:`chronicle.errors.ChronicleError`, which carries its code.

The verbs are declared by the modules of ``chronicle.commands``, each in its
own ``register(verbs)`` (see ``commands.verbs``); this module builds the
parser from them and maps errors to exit codes. Building the parser imports
no verb's work: Polars, Arrow, the store and aiohttp are imported by the verb
that needs them, so a verb pays only for what it uses.
"""

from __future__ import annotations

import argparse
import os
import sys
from importlib import import_module

from chronicle import __version__
from chronicle.commands.verbs import Verbs
from chronicle.errors import EXIT_OK, EXIT_STORE, EXIT_USAGE, ChronicleError
from chronicle.store.fsutil import LockWaits
from chronicle.workspace import Workspace

#: The modules of ``chronicle.commands`` that declare verbs, in the order ``--help`` lists them.
COMMAND_MODULES = ("log", "tables", "show", "sessions", "experiments", "watch", "serve", "search", "report",
                   "prices", "sql", "secrets", "remote", "training")

# ------------------------------------------------------------------- parser

EPILOG = """\
examples:
  chronicle init
  echo '{"type":"annotation","stream":"doc:d1","target":"doc:d1","key":"verdict","value":"good","author":"ana"}' | chronicle append
  chronicle log --type annotation --json
  chronicle seal && chronicle rebuild && chronicle show events_by_type
  chronicle rebuild --as-of 100          # tables as they were at seq 100, in data/tables/as-of/seq-100
  chronicle verify --against 120:ab12... # prove the log only grew since a checkpoint

exit codes: 0 ok, 1 a check failed, 2 bad usage or input, 3 workspace or storage unusable
"""


def build_parser() -> argparse.ArgumentParser:
    from chronicle.argv import Parser

    parser = Parser(
        prog="chronicle", description="An event-sourced, append-only log of LLM research work.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--root", help="workspace directory (default: $CHRONICLE_ROOT or the current directory)")
    parser.add_argument("--wait", type=float, metavar="SECONDS",
                        help="give up (exit 3) when the log's lock stays held this long (default: wait, saying "
                             "after a second which process holds it)")
    parser.add_argument("--version", action="version", version=f"chronicle {__version__}")
    verbs = Verbs(parser)
    for name in COMMAND_MODULES:
        import_module(f"chronicle.commands.{name}").register(verbs)
    return parser


def main(argv: list[str] | None = None, parser: argparse.ArgumentParser | None = None) -> int:
    """Run one command; ``parser`` is one ``build_parser`` made before (the daemon keeps one)."""
    from chronicle.argv import hoist_globals, verb_of

    argv = hoist_globals(list(sys.argv[1:] if argv is None else argv))
    parser = parser or build_parser()
    typo = _unknown_verb(parser, verb_of(argv))
    if typo:
        print(typo, file=sys.stderr)
        return EXIT_USAGE
    args = parser.parse_args(argv)
    LockWaits.notice = lambda text: print(f"chronicle {args.command}: {text}", file=sys.stderr, flush=True)
    LockWaits.give_up_after = args.wait
    try:
        ws = Workspace.at(args.root)
        if args.needs_workspace and not (ws.log_dir / "MANIFEST").is_file():
            from chronicle.store.errors import NotAWorkspace

            raise NotAWorkspace(f"{ws.root} is not a chronicle workspace (no data/log): run `chronicle init` "
                                "there to make it one, or pass --root WORKSPACE")
        return args.func(ws, args)
    except ChronicleError as exc:
        print(f"chronicle {args.command}: {exc.label}{exc}", file=sys.stderr)
        return exc.exit_code
    except BrokenPipeError:
        return EXIT_OK
    except OSError as exc:  # a path given on the command line cannot be read or written
        print(f"chronicle {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as exc:  # never a traceback: one line, and how to get the details
        if os.environ.get("CHRONICLE_DEBUG"):
            raise
        print(f"chronicle {args.command}: unexpected {type(exc).__name__}: {_one_line(exc)} "
              "(the workspace may be damaged: run `chronicle verify`; CHRONICLE_DEBUG=1 shows the traceback)",
              file=sys.stderr)
        return EXIT_STORE


def _unknown_verb(parser: argparse.ArgumentParser, verb: str | None) -> str | None:
    """A one-line error naming the nearest verb, when ``verb`` is none of them."""
    import difflib

    verbs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    if verb is None or verb in verbs:
        return None
    near = difflib.get_close_matches(verb, list(verbs), n=1)
    hint = f"did you mean `chronicle {near[0]}`? " if near else ""
    return f"chronicle: unknown verb {verb!r}: {hint}(`chronicle --help` lists them)"


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= 300 else text[:297] + "..."


if __name__ == "__main__":
    sys.exit(main())
