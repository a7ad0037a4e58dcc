"""Commands served by the running daemon, over a Unix socket.

Why: a command in its own process pays 0.3-0.6 s of Python start, imports
(Polars, Arrow, msgspec, the secret rules) and cold caches before it does a
tenth of a second of work, twice for ``ingest`` then ``show``. ``chronicle
watch`` has all of that warm, so while it runs, the verbs declared
``served`` (``Verbs.add``) run inside it: the command's own process is a light
client that imports nothing but the standard library.

The protocol, one connection per command:

- the client sends one JSON line (its argv, its workspace root, the
  environment variables chronicle reads, its stdout's encoding) with its own
  stdout and stderr attached as file descriptors (``SCM_RIGHTS``);
- the daemon runs the command with those descriptors as the thread's
  ``sys.stdout`` and ``sys.stderr`` (so a pipe, a terminal's width and a
  progress bar behave as in the client's own process), then answers one JSON
  line, ``{"exit": N}``;
- or it answers ``{"declined": WHY}`` and the client runs the command itself:
  a verb not served, a relative path the daemon would read against its own
  folder, an environment that differs, another workspace, ``--help``.

A client that cannot connect (no daemon, a socket left by a killed one) runs
the command itself; so does every client with ``CHRONICLE_NO_DAEMON=1``. A
connection that ends without an answer (the daemon died mid-command) is exit 3:
what the command committed before is in the log, and running it again goes on
from there. Both ends check that the other runs as the same user.

Served commands run one at a time, and never during one of the daemon's own
passes (``busy``), so they share its process without sharing work in flight.
"""

from __future__ import annotations

import contextvars
import hashlib
import json
import os
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from chronicle import __version__

#: The environment variables a served verb reads (besides those starting ``CHRONICLE_``): a
#: command whose environment differs from the daemon's in one of them runs in its own process.
ENV_NAMES = ("HOME", "USER", "LOGNAME", "TZ", "CLAUDE_CONFIG_DIR", "CODEX_HOME", "XDG_CACHE_HOME")
#: Read by the client only, never compared.
_CLIENT_ONLY = ("CHRONICLE_ROOT", "CHRONICLE_NO_DAEMON")
SOCKET_NAME = "watch.sock"
#: The request's shape; a client and a daemon that differ in it or in chronicle's version do not mix.
PROTOCOL = 1
_MAX_REQUEST = 1 << 20
#: AF_UNIX paths are limited to 108 bytes; a longer one is replaced (see ``socket_path``).
_MAX_PATH = 100


def socket_path(root: Path) -> Path:
    """Where the daemon of the workspace at ``root`` listens: ``data/watch.sock``, or, when that
    path is too long for a Unix socket, a name derived from it in a folder only this user may use."""
    path = root / "data" / SOCKET_NAME
    if len(os.fsencode(path)) <= _MAX_PATH:
        return path
    digest = hashlib.sha256(os.fsencode(path)).hexdigest()[:24]
    return Path("/tmp") / f"chronicle-{os.getuid()}" / f"{digest}.sock"


def compared_env(environ: dict[str, str] | os._Environ) -> dict[str, str]:
    return {k: v for k, v in environ.items()
            if (k in ENV_NAMES or k.startswith("CHRONICLE_")) and k not in _CLIENT_ONLY}


def _peer_uid(sock: socket.socket) -> int:
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", creds)[1]


def _read_line(sock: socket.socket, first: bytes = b"") -> bytes:
    data = first
    while not data.endswith(b"\n"):
        if len(data) > _MAX_REQUEST:
            raise ValueError("request too long")
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


# ----------------------------------------------------------------- the client


def call(argv: list[str]) -> int | None:
    """Run the command in this workspace's daemon; its exit code, or None when the caller
    should run it itself. ``argv`` has its global options first (``argv.hoist_globals``)."""
    if os.environ.get("CHRONICLE_NO_DAEMON") or not hasattr(socket, "SO_PEERCRED"):
        return None
    root, rest = _split_root(argv)
    path = socket_path(root)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        try:
            sock.connect(os.fspath(path))
        except OSError:  # no daemon, or the socket of one that is gone
            return None
        if _peer_uid(sock) != os.getuid():
            return None
        request = {"version": [PROTOCOL, __version__], "argv": rest, "root": str(root),
                   "env": compared_env(os.environ), "encoding": sys.stdout.encoding, "errors": sys.stdout.errors}
        sys.stdout.flush()
        sys.stderr.flush()
        try:
            socket.send_fds(sock, [json.dumps(request).encode() + b"\n"], [sys.stdout.fileno(), sys.stderr.fileno()])
        except (OSError, ValueError, AttributeError):  # stdout without a descriptor (a test's capture): run here
            return None
        try:  # from here on the daemon may have started the command: never run it a second time here
            line = _read_line(sock)
        except (OSError, ValueError):
            line = b""
    except KeyboardInterrupt:
        print("chronicle: interrupted (the daemon finishes the command it started)", file=sys.stderr)
        return 130
    finally:
        sock.close()
    if not line.endswith(b"\n"):
        print(f"chronicle: the daemon serving {root} stopped before the command finished; what it recorded is "
              "kept: run the command again", file=sys.stderr)
        return 3
    answer = json.loads(line)
    if "declined" in answer:
        if os.environ.get("CHRONICLE_DEBUG"):
            print(f"chronicle: running here, not in the daemon: {answer['declined']}", file=sys.stderr)
        return None
    return int(answer["exit"])


def _split_root(argv: list[str]) -> tuple[Path, list[str]]:
    """The workspace root the command names (``--root``, else ``$CHRONICLE_ROOT``, else here), and
    the argv without it: the daemon runs it with the root resolved here, not in its own folder."""
    given: str | None = None
    rest: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--root" and i + 1 < len(argv):
            given = argv[i + 1]
            i += 2
            continue
        if arg.startswith("--root="):
            given = arg.split("=", 1)[1]
        else:
            rest.append(arg)
        i += 1
    return Path(given or os.environ.get("CHRONICLE_ROOT") or ".").resolve(), rest


# ----------------------------------------------------------------- the daemon's side


class _ThreadStream:
    """``sys.stdout`` or ``sys.stderr`` in the daemon: a thread serving a command writes to its
    client's stream (and so does work it hands to a pool in its context: a lock wait's notice
    in the ingest's commit thread), every other thread to the daemon's own."""

    def __init__(self, name: str, default: TextIO):
        self._default = default
        self._stream: contextvars.ContextVar[TextIO | None] = contextvars.ContextVar(name, default=None)

    def current(self) -> TextIO:
        return self._stream.get() or self._default

    def use(self, stream: TextIO | None) -> None:
        self._stream.set(stream)

    def write(self, text: str) -> int:
        return self.current().write(text)

    def flush(self) -> None:
        self.current().flush()

    def __getattr__(self, name: str):
        return getattr(self.current(), name)


def _install_thread_streams() -> tuple[_ThreadStream, _ThreadStream]:
    for name in ("stdout", "stderr"):
        if not isinstance(getattr(sys, name), _ThreadStream):
            setattr(sys, name, _ThreadStream(name, getattr(sys, name)))
    return sys.stdout, sys.stderr  # type: ignore[return-value]


def _command_words(argv: list[str]) -> str:
    """The command as typed from its verb on (global options left out), for the daemon's log."""
    from chronicle.argv import verb_of

    verb = verb_of(argv)
    return " ".join(argv[argv.index(verb):] if verb in argv else argv)[:120]


class Server:
    """The daemon's end: accepts commands on ``socket_path(root)`` until ``close``."""

    def __init__(self, root: Path, busy: threading.Lock, on_served: Callable[[str, int, float], None]):
        """``on_served(command, exit code, seconds)`` is called after each client has its answer."""
        self.root = root
        self.path = socket_path(root)
        self.busy = busy
        self.on_served = on_served
        self._sock: socket.socket | None = None
        self._streams: tuple[_ThreadStream, _ThreadStream] | None = None  # sys.stdout, sys.stderr once serving
        #: One parser to decide (under ``_parsing``), one to run (under ``busy``): argparse is not
        #: documented as safe to share between threads.
        self._parser = None
        self._parsing = threading.Lock()
        self._run_parser = None

    def start(self) -> bool:
        """Listen (replacing a socket left by a daemon that died: the caller holds the workspace's
        daemon lock, so no live one owns it) and serve from a thread; False where peers cannot be
        checked (no ``SO_PEERCRED``: every command then runs in its own process)."""
        if not hasattr(socket, "SO_PEERCRED"):
            return False
        self._prepare_folder()
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)  # the socket is this user's only (and SO_PEERCRED is checked too)
        try:
            sock.bind(os.fspath(self.path))
        finally:
            os.umask(old)
        sock.listen(16)
        self._sock = sock
        self._streams = _install_thread_streams()
        threading.Thread(target=self._accept, name="chronicle-served", daemon=True).start()
        return True

    def _prepare_folder(self) -> None:
        folder = self.path.parent
        if folder.name.startswith("chronicle-"):  # the short name under /tmp: a folder of ours, 0700
            folder.mkdir(mode=0o700, exist_ok=True)
            st = folder.lstat()
            if st.st_uid != os.getuid() or st.st_mode & 0o077:
                raise PermissionError(f"{folder} is not this user's private folder: not serving commands")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass

    def _accept(self) -> None:
        while self._sock is not None:
            try:
                conn, _ = self._sock.accept()
            except OSError:  # closed
                return
            threading.Thread(target=self._handle, args=(conn,), name="chronicle-command", daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        fds: list[int] = []
        try:
            if _peer_uid(conn) != os.getuid():
                return
            first, fds, _, _ = socket.recv_fds(conn, 65536, 2)
            try:
                request = json.loads(_read_line(conn, first))
                why = "no stdout and stderr came with it" if len(fds) != 2 else self._decline(request)
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                why = f"a request this daemon cannot read ({type(exc).__name__})"
            if why:
                conn.sendall(json.dumps({"declined": why}).encode() + b"\n")
                return
            given, fds = fds, []  # _run owns them now
            with self.busy:
                started = time.monotonic()
                code = self._run(request, given)
                seconds = time.monotonic() - started
                try:
                    conn.sendall(json.dumps({"exit": code}).encode() + b"\n")
                finally:  # logged even when the client is gone
                    self.on_served(_command_words(request["argv"]), code, seconds)
        except OSError:
            pass  # the client went away
        finally:
            for fd in fds:
                os.close(fd)
            conn.close()

    def _run(self, request: dict, fds: list[int]) -> int:
        """Run the command with the client's descriptors as this thread's stdout and stderr
        (closed when it returns); its exit code."""
        from chronicle import cli
        from chronicle.store.fsutil import LockWaits

        out_stream, err_stream = self._streams
        # As Python opens them: stdout line-buffered on a terminal only, stderr always.
        out = open(fds[0], "w", buffering=1 if os.isatty(fds[0]) else -1, encoding=request["encoding"],
                   errors=request["errors"], closefd=True)
        err = open(fds[1], "w", buffering=1, encoding=request["encoding"], errors="backslashreplace", closefd=True)
        saved = (LockWaits.notice, LockWaits.give_up_after)
        out_stream.use(out)
        err_stream.use(err)
        try:
            self._run_parser = self._run_parser or cli.build_parser()
            code = cli.main(["--root", request["root"], *request["argv"]], self._run_parser)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except Exception as exc:  # CHRONICLE_DEBUG re-raises in cli.main: give the client the traceback
            import traceback

            traceback.print_exception(exc, file=err)
            code = 3
        finally:
            LockWaits.notice, LockWaits.give_up_after = saved
            out_stream.use(None)
            err_stream.use(None)
            for stream in (out, err):
                try:
                    stream.close()
                except OSError:  # the client's pipe is gone (`| head`)
                    pass
        return code

    def _decline(self, request: dict) -> str | None:
        """Why this command must run in the client's own process, or None. Asked before waiting
        for ``busy``: ``--help`` is not kept waiting behind a pass."""
        import io

        from chronicle import cli

        import codecs

        if request["version"] != [PROTOCOL, __version__]:
            return f"the daemon runs chronicle {__version__} (restart `chronicle watch` after an upgrade)"
        if Path(request["root"]) != self.root:
            return "another workspace"
        try:
            codecs.lookup(request["encoding"])
            codecs.lookup_error(request["errors"])
        except (LookupError, TypeError):
            return "an encoding this Python does not know"
        ours = compared_env(os.environ)
        differ = sorted(k for k in ours.keys() | request["env"].keys() if ours.get(k) != request["env"].get(k))
        if differ:
            return f"environment differs: {', '.join(differ)}"
        out_stream, err_stream = self._streams
        sink = io.StringIO()
        out_stream.use(sink)
        err_stream.use(sink)
        try:
            with self._parsing:
                if self._parser is None:
                    self._parser = cli.build_parser()
                args = self._parser.parse_args(["--root", request["root"], *request["argv"]])
        except SystemExit:  # --help, --version or a usage error: the client prints it as it would
            return "not a command to run"
        finally:
            out_stream.use(None)
            err_stream.use(None)
        served = getattr(args, "served", False)
        if not (served(args) if callable(served) else served):
            return f"`{args.command}` is not served"
        return None
