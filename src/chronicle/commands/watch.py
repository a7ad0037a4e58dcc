"""`chronicle watch` and `chronicle status`."""

from __future__ import annotations

import argparse
import json
from datetime import datetime, timezone

# Light at import (the command line imports every verb's module); the daemon and Polars when a verb runs.
from chronicle.commands.output import print_json
from chronicle.commands.verbs import Verbs
from chronicle.errors import EXIT_OK
from chronicle.workspace import Workspace


def register(verbs: Verbs) -> None:
    p = verbs.add("watch", watch, "keep ingesting and projecting as files change, and run the commands other "
                  "terminals type (ingest sessions, show, tables, report, rebuild, status) warm, until SIGTERM/SIGINT",
                  "chronicle watch            # or: chronicle watch --once  (one catch-up pass, for cron)",
                  json=False)
    p.add_argument("--once", action="store_true", help="one catch-up pass, then exit")
    verbs.add("status", status, "the daemon's pid and uptime, the last event, lag per root, projection checkpoints",
              "chronicle status --json", served=True)


def watch(ws: Workspace, args: argparse.Namespace) -> int:
    from chronicle import daemon

    daemon.serve(ws, once=args.once)  # daemon.AlreadyRunning (exit 3) when another holds the workspace
    return EXIT_OK


def status(ws: Workspace, args: argparse.Namespace) -> int:
    import polars as pl

    from chronicle import daemon, daemon_state
    from chronicle.committed import CHECKPOINTS
    from chronicle.ingest.sources import META_KINDS, discover
    from chronicle.ingest.cohort_plans import cohorts_behind, definitions_behind
    from chronicle.ingest.sessions import bytes_behind, cursors, known_kinds

    state = daemon_state.read_state(ws)
    running = daemon_state.is_running(ws)
    log = ws.open_log()
    snap = log.snapshot()
    last = None
    if snap.head:
        env = snap.envelope().filter(pl.col("seq") == snap.head).collect()
        if env.height:
            last = {"seq": snap.head, "type": env["type"][0], "recorded_at": env["recorded_at"][0].isoformat()}
    config = daemon.WatchConfig.from_workspace(ws)
    known = cursors(snap)
    lag = []
    for root in config.session_roots:
        if not root.is_dir():
            lag.append({"root": str(root), "exists": False, "files": 0, "bytes_behind": 0})
            continue
        files = [f for f in discover([root], known_kinds(known)) if f.kind not in META_KINDS]
        lag.append({"root": str(root), "exists": True, "files": len(files), "bytes_behind": bytes_behind(files, known)})
    # Experiment folders lag in files (definitions not yet recorded, cohort specs not yet planned).
    for root, behind in ((config.definitions_dir, definitions_behind), (config.cohorts_dir, cohorts_behind)):
        lag.append({"root": str(root), "exists": root.is_dir(), "files_behind": behind(ws, snap)})
    checkpoints_path = ws.tables_dir / CHECKPOINTS
    checkpoints = json.loads(checkpoints_path.read_text()) if checkpoints_path.exists() else {}
    projections = [{"projection": name, "seq": cp.get("seq"), "behind": snap.head - cp.get("seq", 0)}
                   for name, cp in sorted(checkpoints.items())]
    uptime = None
    if running and state.get("started_at"):
        uptime = (datetime.now(timezone.utc) - datetime.fromisoformat(state["started_at"])).total_seconds()
    pushes = _push_lag(ws, snap)
    report = {"running": running, "pid": state.get("pid") if running else None, "uptime_s": uptime,
              "serving": state.get("socket") if running else None,
              "last_pass_at": state.get("last_pass_at"), "passes": state.get("passes"), "last_event": last,
              "roots": lag, "projections": projections, "remotes": pushes, "last_error": state.get("last_error")}
    if args.json:
        print_json(report)
        return EXIT_OK
    print(f"daemon      {'running, pid ' + str(report['pid']) if running else 'not running'}"
          + (f", up {_duration(uptime)}" if uptime is not None else "")
          + (f"; serving commands on {report['serving']}" if report["serving"] else ""))
    print(f"last pass   {report['last_pass_at'] or '-'}  ({report['passes'] or 0} passes)")
    print("last event  " + (f"seq {last['seq']:,} {last['type']} at {last['recorded_at']}" if last else "-"))
    for r in lag:
        if not r["exists"]:
            state_txt = "missing"
        elif "files_behind" in r:
            state_txt = f"{r['files_behind']} files not yet recorded"
        else:
            state_txt = f"{r['files']} files, {r['bytes_behind']:,} bytes not yet ingested"
        print(f"root        {r['root']}: {state_txt}")
    for p in projections:
        print(f"projection  {p['projection']:<16} at seq {p['seq']:,} ({p['behind']:,} behind)")
    for r in pushes:
        print(f"remote      {r['remote']:<16} {r['behind']:,} events not pushed"
              + (f" (last push {r['pushed_at']})" if r["pushed_at"] else " (never pushed)")
              + (f"; last failure {r['error_at']}: {r['error']}" if r["error"] else ""))
    if report["last_error"]:
        print(f"last error  {report['last_error']}")
    return EXIT_OK


def _push_lag(ws: Workspace, snap) -> list[dict]:
    """Per remote: how many events the remote lacks (from the last push's record: no network), and the
    last failure since, if any."""
    from chronicle.remote import push_state, remotes

    out = []
    for name in sorted(remotes(ws.data)):
        st = push_state(ws.data, name)
        failing = st.error is not None and (st.at is None or (st.error_at or "") >= st.at)
        out.append({"remote": name, "pushed_seq": st.head, "behind": snap.head - st.head, "pushed_at": st.at,
                    "error": st.error if failing else None, "error_at": st.error_at if failing else None})
    return out


def _duration(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 86400}d {s % 86400 // 3600}h {s % 3600 // 60}m" if s >= 3600 else f"{s // 60}m {s % 60}s"
