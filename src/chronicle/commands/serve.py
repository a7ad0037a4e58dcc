"""`chronicle serve`: the read-only web viewer, and `chronicle demo`."""

from __future__ import annotations

import argparse

from chronicle.commands.output import out
from chronicle.commands.verbs import Verbs
from chronicle.errors import EXIT_OK, CheckFailed
from chronicle.workspace import Workspace


def register(verbs: Verbs) -> None:
    p = verbs.add("serve", cmd_serve, "a read-only web viewer: sessions, documents, scores, usage, events; live",
                  "chronicle serve --port 8765        # then open http://127.0.0.1:8765/", json=False)
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1: this machine only; the viewer has no login)")
    p.add_argument("--port", type=int, default=8765, help="port (default 8765; 0 picks a free one)")
    p.add_argument("--stale", action="store_true",
                   help="do not bring the tables up to date while serving (pages say how far they lag)")
    verbs.add("demo", cmd_demo, "run the end-to-end demo on the embedded example data", "chronicle --root demo demo",
              json=False, workspace=False)


def cmd_serve(ws: Workspace, args: argparse.Namespace) -> int:
    from chronicle.web.app import serve  # aiohttp's server only when serving

    try:
        serve(ws, args.host, args.port, catch_up=not args.stale)
    except OSError as exc:
        raise CheckFailed(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}") from None
    return EXIT_OK


def cmd_demo(ws: Workspace, args: argparse.Namespace) -> int:
    from chronicle.demo import run_demo

    return run_demo(ws, out=out)
