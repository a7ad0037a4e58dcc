"""`chronicle watch`: keep the log and the tables current, for months.

One daemon per workspace: it holds ``data/watch.lock`` for its lifetime and
writes ``data/watch.json`` (pid, start, last pass, counters) for ``chronicle
status``. It watches the workspace's experiment definitions (``data/1_raw``)
and cohort specs (``data/cohorts``), and the Claude Code roots and git
repositories named in ``chronicle.toml``::

    [watch]
    claude_roots = ["~/.claude/projects"]   # default: the ingest defaults
    codex_roots = ["~/.codex/sessions"]     # default: $CODEX_HOME/sessions
    git_repos = ["~/src/myrepo"]
    seal_mb = 16                # seal when the WAL holds this much ...
    seal_seconds = 300          # ... or this long after the last seal
    full_pass_seconds = 300     # re-scan everything this often (missed events)
    debounce_ms = 200
    slow_projections = ["conversations", "episodes"]   # rebuilt in a child process at most every ...
    slow_projection_seconds = 30                          # ... (the others after every pass)

Each batch of file changes is ingested incrementally (offsets, generations:
see ``ingest.sessions``); a change to a definition file records it and
re-plans every cohort, a change to a ``cohort.toml`` re-plans that cohort (a
plan is recorded only when its membership or spec changed); every pass ends
with the projections brought up to date. Everything it does is safe to interrupt: a SIGKILL leaves at worst an
uncommitted chunk, which the next pass reads again (a chunk and its cursor
commit together). SIGTERM and SIGINT stop it after the current pass. Problems
with one file (vanished, unreadable) are logged and recorded, never fatal.
Log lines are JSON, in ``data/logs/watch.log`` (rotated).

While it runs, it also runs the verbs declared ``served`` for their clients
(``chronicle.served``): ``chronicle ingest sessions`` or ``chronicle show`` typed
in another terminal costs a connection, not a Python start and its imports.
A served command never runs while a pass records what changed (``busy``); it may
run while the pass brings the tables up to date (each projection has its lock).
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import watchfiles

from chronicle import search
from chronicle.errors import ChronicleError
from chronicle.ingest.sources import SourceFile, by_agent, classify, discover
from chronicle.ingest.cohort_plans import cohorts_folder, definitions_folder, sync_experiments
from chronicle.ingest.git import GitError, ingest_git
from chronicle.ingest.sessions import SessionIngester, Summary
from chronicle.projection import Engine, ProjectionError
from chronicle.pusher import Pusher
from chronicle.remote import remotes
from chronicle.served import Server
from chronicle.secrets.scan import scan as scan_secrets
from chronicle.store import StoreError
from chronicle.store.fsutil import write_durably
from chronicle.daemon_state import LOCK_NAME, STATE_NAME, read_state
from chronicle.workspace import Workspace



#: How much the slow rebuild child yields to the daemon when both want the CPU (nice 10:
#: about a tenth of the weight), so a new line is not kept waiting behind a full rebuild.
SLOW_NICE = 10


def _background_priority() -> None:
    """Runs in the slow rebuild child between fork and exec (a syscall, no locks taken);
    its threads, all started later, inherit the lower priority."""
    os.nice(SLOW_NICE)


class AlreadyRunning(ChronicleError):
    """Another daemon holds this workspace."""


@dataclass
class WatchConfig:
    #: Every coding agent's session folders (Claude Code's, then Codex's).
    session_roots: list[Path]
    git_repos: list[Path]
    definitions_dir: Path
    cohorts_dir: Path
    seal_bytes: int = 16 << 20
    seal_seconds: float = 300.0
    full_pass_seconds: float = 300.0
    debounce_ms: int = 200
    slow_projections: tuple[str, ...] = ("conversations", "episodes")
    slow_projection_seconds: float = 30.0

    @classmethod
    def from_workspace(cls, ws: Workspace) -> WatchConfig:
        section = ws.config.watch

        def paths(given: list[str] | None, default: list[Path]) -> list[Path]:
            return default if given is None else [(ws.root / Path(v).expanduser()).resolve() for v in given]

        return cls(
            session_roots=[*paths(section.claude_roots, by_agent("claude-code").default_roots(os.environ)),
                           *paths(section.codex_roots, by_agent("codex").default_roots(os.environ))],
            git_repos=paths(section.git_repos, []),
            definitions_dir=definitions_folder(ws),
            cohorts_dir=cohorts_folder(ws),
            seal_bytes=int(section.seal_mb * (1 << 20)),
            seal_seconds=section.seal_seconds,
            full_pass_seconds=section.full_pass_seconds,
            debounce_ms=int(section.debounce_ms),
            slow_projections=tuple(section.slow_projections),
            slow_projection_seconds=section.slow_projection_seconds,
        )


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {"time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
                 "level": record.levelname.lower(), "event": record.getMessage()}
        entry.update(getattr(record, "fields", {}))
        return json.dumps(entry, default=str, sort_keys=True)


class _LineFormatter(logging.Formatter):
    """For the terminal: the time, the event and its fields on one line."""

    def format(self, record: logging.LogRecord) -> str:
        fields = getattr(record, "fields", {})
        if record.getMessage() == "pass":
            said = (f"pass: {fields.get('files', 0):,} files, {fields.get('lines', 0):,} new lines, "
                    f"{(fields.get('bytes') or 0) / 1e6:,.1f} MB, {fields.get('rewritten', 0)} rewritten, "
                    f"{fields.get('problems', 0)} problems ({fields.get('seconds') or 0:.2f} s)")
        else:
            said = " ".join([record.getMessage(), *(f"{k}={v}" for k, v in fields.items())])
        return f"{datetime.fromtimestamp(record.created).strftime('%H:%M:%S')} {said}"


def make_logger(ws: Workspace, terminal: bool = False) -> logging.Logger:
    """The daemon's log: JSON Lines in data/logs/watch.log, and one line per event on
    stderr when ``terminal`` (`chronicle watch` run by hand)."""
    folder = ws.data / "logs"
    folder.mkdir(parents=True, exist_ok=True)
    logger = logging.getLogger(f"chronicle.watch.{ws.root}")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    if not logger.handlers:
        handler = logging.handlers.RotatingFileHandler(folder / "watch.log", maxBytes=10 << 20, backupCount=5)
        handler.setFormatter(_JsonFormatter())
        logger.addHandler(handler)
        if terminal:
            line = logging.StreamHandler(sys.stderr)
            line.setFormatter(_LineFormatter())
            logger.addHandler(line)
    return logger


def _info(log: logging.Logger, event: str, **fields: object) -> None:
    log.info(event, extra={"fields": fields})


@dataclass
class _State:
    pid: int
    started_at: str
    roots: list[str]
    passes: int = 0
    last_pass_at: str | None = None
    last_pass_seconds: float | None = None
    lines: int = 0
    problems: int = 0
    last_error: str | None = None
    counters: dict = field(default_factory=dict)
    #: Where it serves commands (``chronicle.served``), once it does.
    socket: str | None = None


class Watcher:
    def __init__(self, ws: Workspace, config: WatchConfig, logger: logging.Logger):
        self.ws = ws
        self.config = config
        self.logger = logger
        self.stop = threading.Event()
        #: Held while a pass records what changed and while a served command runs: one at a time.
        self.busy = threading.Lock()
        self.log = ws.open_log()
        self.engine = Engine.of(ws)
        self.state = _State(pid=os.getpid(), started_at=_now(),
                            roots=[str(p) for p in [*config.session_roots, config.definitions_dir,
                                                    config.cohorts_dir, *config.git_repos]])
        self.last_seal = time.monotonic()
        self.last_slow = 0.0
        self.slow_pending = False
        self.slow_proc: subprocess.Popen | None = None
        #: Pushes after each seal when a remote is configured (its own thread: ingest never waits on it).
        self.pusher: Pusher | None = Pusher(ws, logger) if remotes(ws.data) else None

    # ------------------------------------------------------------------ passes

    def catch_up(self) -> None:
        """A full pass: every file under every root, every repository."""
        self._safe_pass(None)

    def _pass(self, changed: set[Path] | None) -> None:
        """Record what changed, then bring the tables up to date. Served commands wait for the
        recording (``busy``), not for the tables: a projection commits under its own lock, and
        a served ``show`` waits for the one it reads."""
        started = time.monotonic()
        with self.busy:
            summary = self._record(changed)
        self._project(everything=changed is None)
        self.state.passes += 1
        self.state.lines += summary.lines
        self.state.problems += summary.errors
        self.state.last_pass_at = _now()
        self.state.last_pass_seconds = round(time.monotonic() - started, 3)
        if summary.lines or summary.rewritten or changed is None:
            _info(self.logger, "pass", full=changed is None, files=summary.files, lines=summary.lines,
                  bytes=summary.bytes, rewritten=summary.rewritten, problems=summary.errors,
                  seconds=self.state.last_pass_seconds)
        self._write_state()
        if changed is None:
            _release_memory()

    def _record(self, changed: set[Path] | None) -> Summary:
        """Ingest the changed files (every file when ``changed`` is None), the experiment folders,
        the git repositories on a full pass; scan for secrets; seal when due."""
        roots = [r for r in self.config.session_roots if r.is_dir()]
        ingester = SessionIngester(self.log, self.ws.data / "ingest.lock", quiet_seconds=10.0,
                                   secrets_dir=self.ws.data)
        # the changed files are chosen under the ingest lock, with the kinds the log recorded
        summary = ingester.run(roots, None if changed is None else
                               lambda known: self._changed_files(changed, roots, known))
        for problem in summary.problems:
            self.logger.warning("problem", extra={"fields": {"detail": problem}})
        self._sync_experiments(changed)
        secrets = scan_secrets(self.log, self.ws.data)
        if secrets.findings:
            self.logger.warning("secrets found", extra={"fields": {"findings": secrets.findings,
                                                                    "see": "chronicle secrets list"}})
        if changed is None:
            for repo in self.config.git_repos:
                try:
                    g = ingest_git(self.log, repo)
                    if g.new:
                        _info(self.logger, "git", repo=g.repo, new=g.new)
                except GitError as exc:
                    self.logger.warning("git failed", extra={"fields": {"repo": str(repo), "error": str(exc)}})
        self._maybe_seal()
        return summary

    def _sync_experiments(self, changed: set[Path] | None) -> None:
        """Record changed definitions and re-plan the cohorts they (or a changed spec) touch."""
        c = self.config
        only: set[str] | None = None
        if changed is not None:
            if not any(p.is_relative_to(c.definitions_dir) for p in changed):
                # A new cohort folder may arrive as one event for the folder, none for its spec.
                only = {rel.parts[0] for p in changed if p.is_relative_to(c.cohorts_dir)
                        and (rel := p.relative_to(c.cohorts_dir)).parts and not rel.parts[0].startswith(".")}
                if not only:
                    return
        sync = sync_experiments(self.ws, self.log, only)
        d = sync.definitions
        if d is not None and (d.added or d.changed or d.removed):
            _info(self.logger, "definitions", added=d.added, changed=d.changed, removed=d.removed)
        if sync.replanned:
            _info(self.logger, "cohorts planned", cohorts=sync.replanned)
        for problem in sync.problems:
            self.logger.warning("experiment problem", extra={"fields": {"detail": problem}})

    def _watched(self) -> set[Path]:
        c = self.config
        return {r for r in [*c.session_roots, c.definitions_dir, c.cohorts_dir] if r.is_dir()}

    @staticmethod
    def _changed_files(changed: set[Path], roots: list[Path], known: dict[str, str]) -> list[SourceFile]:
        """The files to read for a batch of changes. A folder that appeared is
        read whole: files created in it before the watch reached it send no event."""
        out: dict[Path, SourceFile] = {}
        for p in sorted(changed):
            root = next((r for r in roots if p.is_relative_to(r)), None)
            if root is None:
                continue
            if p.is_dir() and not p.is_symlink():
                for f in discover([p], known):
                    out.setdefault(f.path, SourceFile(f.path, root, f.kind))
                continue
            kind = classify(p, known)
            if kind and p.is_file() and not p.is_symlink():
                out.setdefault(p, SourceFile(p, root, kind))
        return sorted(out.values(), key=lambda f: f.path)

    def _maybe_seal(self) -> None:
        wal = self.log.wal_bytes()
        if wal and (wal >= self.config.seal_bytes or time.monotonic() - self.last_seal >= self.config.seal_seconds):
            entries = self.log.seal()
            self.last_seal = time.monotonic()
            if entries:
                _info(self.logger, "sealed", events=sum(e.count for e in entries), wal_bytes=wal)
                if self.pusher is not None:
                    self.pusher.poke()

    def _project(self, everything: bool = False) -> None:
        """Bring the tables up to date. The quick projections (token usage,
        errors) run here after every pass. The slow ones (full rebuilds over
        every transcript) run in a child ``chronicle rebuild`` at most every
        ``slow_projection_seconds``: the next change is not kept waiting behind
        them, and their memory goes back to the system when the child exits."""
        quick = [n for n in self.engine.projections if n not in self.config.slow_projections]
        if quick:
            try:
                outcomes = self.engine.run(self.log.snapshot(), quick)
            except ProjectionError as exc:
                self.state.last_error = str(exc)
                self.logger.error("projection failed", extra={"fields": {"error": str(exc)}})
                outcomes = []
            changed = [o.name for o in outcomes if o.action != "current"]
            if changed:
                _info(self.logger, "projected", projections=changed, seq=outcomes[0].seq)
        self._index()
        self.slow_pending = True
        self._start_slow(force=everything)

    def _index(self) -> None:
        """Keep the search index up with the log once a search has built it (its first
        build is left to that search: over a large log it takes seconds)."""
        if not (self.ws.tables_dir / search.INDEX_NAME).exists():
            return
        try:
            if search.catch_up(self.ws.tables_dir, self.log.snapshot()) != "current":
                _info(self.logger, "indexed", seq=self.log.snapshot().head)
        except Exception as exc:  # a broken index must not stop the daemon; the next search rebuilds it
            self.state.last_error = f"search index: {exc}"
            self.logger.error("search index failed", extra={"fields": {"error": str(exc)}})

    def _start_slow(self, force: bool = False) -> None:
        slow = [n for n in self.config.slow_projections if n in self.engine.projections]
        if not slow or not self.slow_pending or not self._slow_done():
            return
        if not force and time.monotonic() - self.last_slow < self.config.slow_projection_seconds:
            return
        self.slow_pending = False
        self.last_slow = time.monotonic()
        # Its own process (its memory goes back when it ends), not served by this daemon.
        env = {**os.environ, "CHRONICLE_ROOT": str(self.ws.root), "CHRONICLE_NO_DAEMON": "1"}
        self.slow_proc = subprocess.Popen([sys.executable, "-m", "chronicle", "rebuild", *slow], env=env,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                          preexec_fn=_background_priority)
        _info(self.logger, "rebuilding", projections=slow, pid=self.slow_proc.pid)

    def _slow_done(self) -> bool:
        """True when no slow rebuild is running (reaping one that finished)."""
        if self.slow_proc is None:
            return True
        if self.slow_proc.poll() is None:
            return False
        if self.slow_proc.returncode != 0:
            err = self.slow_proc.stderr.read().decode(errors="replace").strip() if self.slow_proc.stderr else ""
            self.state.last_error = f"rebuild exited {self.slow_proc.returncode}: {err[-500:]}"
            self.logger.error("rebuild failed", extra={"fields": {"error": self.state.last_error}})
        self.slow_proc = None
        return True

    def _write_state(self) -> None:
        write_durably(self.ws.data / STATE_NAME, json.dumps(self.state.__dict__, indent=1).encode())

    # ------------------------------------------------------------------ loop

    def run(self, once: bool = False) -> None:
        _info(self.logger, "started", pid=os.getpid(), roots=self.state.roots)
        self.catch_up()
        if once:
            return
        if self.pusher is not None:
            self.pusher.start()
        server = Server(self.ws.root, self.busy, self._served)
        try:
            if server.start():
                self.state.socket = str(server.path)
                self._write_state()
                _info(self.logger, "serving", socket=self.state.socket)
        except OSError as exc:  # commands then run in their own processes, as without a daemon
            self.logger.warning("not serving commands", extra={"fields": {"error": str(exc)}})
        try:
            self._watch()
        finally:
            server.close()
        self._finish_slow()
        if self.pusher is not None:
            self.pusher.close()
        _info(self.logger, "stopped", pid=os.getpid())

    def _served(self, command: str, code: int, seconds: float) -> None:
        _info(self.logger, "served", command=command, exit=code, seconds=round(seconds, 3))
        if seconds >= 0.5:  # a command that took long may have read large tables: give their memory back
            _release_memory()

    def _watch(self) -> None:
        last_full = time.monotonic()
        while not self.stop.is_set():
            watched = self._watched()
            if not watched:  # nothing to watch yet: look again later (a folder may appear)
                self.stop.wait(min(self.config.full_pass_seconds, 5.0))
                self.catch_up()
                continue
            roots = sorted(watched)
            settled = False  # the watch is in place only once it first yields
            for changes in watchfiles.watch(*roots, debounce=self.config.debounce_ms, step=20, stop_event=self.stop,
                                            rust_timeout=1000, yield_on_timeout=True, raise_interrupt=False,
                                            ignore_permission_denied=True):
                if self.stop.is_set():
                    break
                if not settled or time.monotonic() - last_full >= self.config.full_pass_seconds:
                    # Files written before the watch was in place sent no event: look at everything.
                    settled = True
                    self.catch_up()
                    last_full = time.monotonic()
                elif changes:
                    gone = sorted(p for c, p in changes if c == watchfiles.Change.deleted and not Path(p).exists())
                    if gone:  # its events stay in the log; a renamed file is read again under its new name
                        _info(self.logger, "removed", paths=gone[:100], count=len(gone))
                    self._safe_pass({Path(p) for _, p in changes})
                else:
                    with self.busy:
                        self._maybe_seal()
                        self._start_slow()
                now_roots = self._watched()
                if now_roots != watched:  # a root appeared or vanished: watch the new set
                    _info(self.logger, "roots changed", roots=sorted(map(str, now_roots)))
                    self.catch_up()
                    break

    def _finish_slow(self) -> None:
        """On the way out, leave every table current."""
        if self.slow_proc is not None:
            self.slow_proc.wait()
            self._slow_done()
        if self.slow_pending:
            self._start_slow(force=True)
            if self.slow_proc is not None:
                self.slow_proc.wait()
                self._slow_done()

    def _safe_pass(self, changed: set[Path] | None) -> None:
        try:
            self._pass(changed)
        except (OSError, StoreError) as exc:
            # A vanished folder or a passing storage error: log it, and let the next pass retry.
            self.state.last_error = f"{type(exc).__name__}: {exc}"
            self.logger.error("pass failed", extra={"fields": {"error": self.state.last_error}})
            self._write_state()


def _release_memory() -> None:
    """Give memory freed by a big pass back to the system: a daemon that ingested
    a gigabyte once should not keep its high-water mark for months."""
    import ctypes
    import gc

    import pyarrow as pa

    gc.collect()
    pa.default_memory_pool().release_unused()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def serve(ws: Workspace, once: bool = False) -> None:
    """Run the daemon in this process until SIGTERM/SIGINT (or one pass with ``once``)."""
    import fcntl

    ws.data.mkdir(parents=True, exist_ok=True)
    fd = os.open(ws.data / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            state = read_state(ws)
            raise AlreadyRunning(f"a daemon already watches {ws.root} (pid {state.get('pid', '?')})") from None
        watcher = Watcher(ws, WatchConfig.from_workspace(ws), make_logger(ws, terminal=True))

        def stop(signum: int, _frame: object) -> None:
            _info(watcher.logger, "signal", signal=signal.Signals(signum).name)
            watcher.stop.set()

        previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            watcher.run(once=once)
        finally:
            for s, h in previous.items():
                signal.signal(s, h)
            watcher.log.close()
    finally:
        os.close(fd)
