"""The `chronicle` command's entry point.

`chronicle search` is answered before the rest of the CLI is imported: a warm
search costs a Python start, sqlite3 and one query, not the seconds' worth of
Polars, Arrow and aiohttp imports every other verb needs. Every other verb is
offered to the workspace's daemon first (:mod:`chronicle.served`: `chronicle
watch` runs the verbs it serves, warm), then goes to :mod:`chronicle.cli`,
which declares `search` too.
"""

from __future__ import annotations

import argparse
import os
import sys

from chronicle.argv import Parser, hoist_globals, verb_of


def search_main(argv: list[str]) -> int:
    from chronicle.commands import search as search_cmd
    from chronicle.store.errors import StoreError
    from chronicle.config import ConfigError
    from chronicle.workspace import Workspace

    parser = Parser(prog="chronicle")
    parser.add_argument("--root")
    parser.add_argument("--wait", type=float)
    sub = parser.add_subparsers(dest="verb", required=True)
    search_cmd.add_arguments(sub.add_parser("search", help=search_cmd.HELP, description=search_cmd.HELP,
                                            epilog=search_cmd.EXAMPLES,
                                            formatter_class=argparse.RawDescriptionHelpFormatter))
    args = parser.parse_args(argv)
    try:
        return search_cmd.run(Workspace.at(args.root), args)
    except (search_cmd.SearchError, ConfigError) as exc:
        print(f"chronicle search: error: {exc}", file=sys.stderr)
        return 2
    except StoreError as exc:
        print(f"chronicle search: {exc}", file=sys.stderr)
        return 3
    except BrokenPipeError:
        return 0
    except Exception as exc:  # never a traceback (CHRONICLE_DEBUG=1 shows it)
        from chronicle.projection import ProjectionError

        if isinstance(exc, ProjectionError):
            print(f"chronicle search: {exc}", file=sys.stderr)
            return 1
        if os.environ.get("CHRONICLE_DEBUG"):
            raise
        print(f"chronicle search: unexpected {type(exc).__name__}: {' '.join(str(exc).split())[:300]} "
              "(CHRONICLE_DEBUG=1 shows the traceback)", file=sys.stderr)
        return 3


class _NoPandas:
    """An import finder that says pandas is not installed (see ``main``)."""

    @staticmethod
    def find_spec(name: str, path: object = None, target: object = None) -> None:
        if name == "pandas" or name.startswith("pandas."):
            raise ModuleNotFoundError(f"No module named {name!r} (chronicle's command keeps pandas out)", name=name)


def main() -> None:
    # Where pandas is installed, pyarrow imports it the first time it turns a Python list into
    # an array (to ask whether the list is a pandas object): 0.35 s added to every command that
    # reads the WAL. No verb hands Arrow a pandas object, so the command keeps pandas out; a
    # library that tries it optionally (deltalake) is told it is absent.
    sys.meta_path.insert(0, _NoPandas())
    argv = hoist_globals(sys.argv[1:])
    if verb_of(argv) == "search" and "-h" not in argv[:1] and "--help" not in argv[:1]:
        sys.exit(search_main(argv))
    from chronicle import served

    code = served.call(argv)  # run by the workspace's daemon, when one runs and serves this verb
    if code is not None:
        sys.exit(code)
    from chronicle.cli import main as cli_main

    sys.exit(cli_main(argv))
