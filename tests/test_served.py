"""Commands served by a running `chronicle watch` (chronicle.served), with real processes:
the output, the exit code and the log are what the command gives in its own process; what the
daemon must not serve runs in the client's process; a daemon killed mid-command loses nothing."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from chronicle.store import EventLog
from chronicle.workspace import Workspace

from conftest import ROOT, run_cli
from daemon_helpers import Daemon

EXAMPLES = ROOT / "data" / "examples" / "claude-projects"
#: A daemon that watches no transcripts: what the log holds comes from the commands alone.
QUIET = '[watch]\nclaude_roots = []\ncodex_roots = []\n'


def served_commands(ws: Path) -> list[str]:
    log = ws / "data" / "logs" / "watch.log"
    return [e["command"] for e in map(json.loads, log.read_text().splitlines()) if e["event"] == "served"]


def workspace(path: Path, config: str = QUIET) -> Path:
    Workspace.at(path).init()
    (path / "chronicle.toml").write_text(config)
    return path


@pytest.fixture
def daemon(tmp_path: Path):
    d = Daemon(workspace(tmp_path / "served"))
    d.start()
    yield d
    if d.proc.poll() is None:
        d.proc.send_signal(signal.SIGTERM)  # it leaves every table current first: give it time
        d.proc.wait(timeout=120)


def normal(text: bytes, root: Path) -> str:
    """Output with the workspace's path and timings taken out (two workspaces, one machine)."""
    out = text.decode().replace(str(root), "ROOT")
    return re.sub(r"\d+\.\d+ ?(s|MB/s)\b", "T", out)


def test_a_served_command_gives_what_it_gives_in_its_own_process(daemon: Daemon, tmp_path: Path) -> None:
    projects = tmp_path / "projects"
    shutil.copytree(EXAMPLES, projects)
    alone = workspace(tmp_path / "alone")
    commands = [
        ("ingest", "sessions", str(projects)),
        ("show", "usage_daily", "--json"),
        ("show", "sessions", "--limit", "2"),
        ("show", "no_such_table"),
        ("report", "daily", "--json"),
        ("report", "session"),
        ("rebuild",),  # the daemon's own passes may have built some already: compared the second time
        ("rebuild",),
        ("tables",),
        ("show", "api_calls", "--csv", "--where", "output_tokens > 1"),
        ("rebuild", "no_such_projection"),
    ]
    for i, args in enumerate(commands):
        served = run_cli(*args, root=daemon.ws)
        own = run_cli(*args, root=alone)
        assert served.returncode == own.returncode, (args, served.stderr)
        if args == ("rebuild",) and commands[i + 1] == args:
            continue
        assert normal(served.stdout, daemon.ws) == normal(own.stdout, alone), args
        assert normal(served.stderr, daemon.ws) == normal(own.stderr, alone), args
    assert [c.split()[0] for c in served_commands(daemon.ws)] == [a[0] for a in commands]
    assert run_cli("show", "no_such_table", root=daemon.ws).returncode == 2
    # what it recorded is in the log, whole
    assert run_cli("verify", root=daemon.ws).returncode == 0
    status = json.loads(run_cli("status", "--json", root=daemon.ws, check=True).stdout)
    assert status["serving"] == str(daemon.ws / "data" / "watch.sock")


def test_what_the_daemon_must_not_serve_runs_in_the_clients_process(daemon: Daemon, tmp_path: Path) -> None:
    ws = daemon.ws
    shutil.copytree(EXAMPLES, tmp_path / "projects")
    env = {**os.environ, "CHRONICLE_ROOT": str(ws)}

    def chronicle(*args: str, cwd: Path = tmp_path, **extra: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "chronicle", *args], cwd=cwd, env={**env, **extra},
                              capture_output=True, timeout=120)

    # a path relative to the client's folder is read there, not in the daemon's
    relative = chronicle("ingest", "sessions", "projects", "--json")
    assert relative.returncode == 0, relative.stderr
    assert json.loads(relative.stdout)["new_files"] > 0
    # the environment a verb reads differs from the daemon's: the client's holds
    config = tmp_path / "claude-config"
    shutil.copytree(EXAMPLES, config / "projects")
    other = chronicle("ingest", "sessions", "--json", CLAUDE_CONFIG_DIR=str(config))
    assert other.returncode == 0, other.stderr
    assert str(config / "projects") in json.loads(other.stdout)["roots"]
    # help, stdin, a verb not served, and a client told to keep away
    assert chronicle("show", "--help").stdout.startswith(b"usage: chronicle show")
    note = b'{"type":"annotation","stream":"doc:x","target":"doc:x","key":"k","value":"v","author":"me"}\n'
    assert subprocess.run([sys.executable, "-m", "chronicle", "append"], input=note, env=env,
                          capture_output=True, timeout=60).returncode == 0
    assert chronicle("show", "events_by_type", CHRONICLE_NO_DAEMON="1").returncode == 0
    assert served_commands(ws) == []
    # while a served command from another client goes through
    assert chronicle("show", "events_by_type").returncode == 0
    assert served_commands(ws) == ["show events_by_type"]


def test_a_served_command_imports_nothing_heavy_in_the_client(daemon: Daemon) -> None:
    note = b'{"type":"annotation","stream":"doc:x","target":"doc:x","key":"k","value":"v","author":"me"}\n'
    run_cli("append", root=daemon.ws, stdin=note, check=True)
    code = ("import sys; from chronicle import entry; sys.argv = ['chronicle', 'show', 'events_by_type', '--json']\n"
            "try:\n    entry.main()\nexcept SystemExit as e:\n    code = e.code\n"
            "print(code, sorted(m for m in ('polars', 'pyarrow', 'msgspec', 'chronicle.cli') if m in sys.modules), "
            "file=sys.stderr)")
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, "CHRONICLE_ROOT": str(daemon.ws)},
                         capture_output=True, timeout=60)
    assert out.stderr.decode().strip().splitlines()[-1] == "0 []"
    assert json.loads(out.stdout)["type"] == "annotation"  # the table was printed, by the daemon, to this process's stdout
    assert served_commands(daemon.ws) == ["show events_by_type --json"]


def test_clients_served_at_once_each_get_their_own_output(daemon: Daemon, tmp_path: Path) -> None:
    shutil.copytree(EXAMPLES, tmp_path / "projects")
    run_cli("ingest", "sessions", str(tmp_path / "projects"), root=daemon.ws, check=True)
    env = {**os.environ, "CHRONICLE_ROOT": str(daemon.ws)}
    tables = ["sessions", "api_calls", "usage_daily", "messages", "events_by_type", "tool_calls"] * 2
    procs = [subprocess.Popen([sys.executable, "-m", "chronicle", "show", t, "--json", "--columns", "all"], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for t in tables]
    outs = [p.communicate(timeout=120) for p in procs]
    for table, (out, err), p in zip(tables, outs, procs):
        assert p.returncode == 0, err
        rows = [json.loads(x) for x in out.splitlines()]
        assert rows, table
        own = subprocess.run([sys.executable, "-m", "chronicle", "show", table, "--json", "--columns", "all"],
                             env={**env, "CHRONICLE_NO_DAEMON": "1"}, capture_output=True, timeout=120)
        assert out == own.stdout, table
    assert len(served_commands(daemon.ws)) == 1 + len(tables)


LINES = 90_000  # 45 MB: more than one chunk of ingest (32 MB), each committed with its cursor


def test_a_daemon_killed_mid_command_loses_nothing_and_the_next_client_runs_alone(daemon: Daemon,
                                                                                     tmp_path: Path) -> None:
    ws = daemon.ws
    big = tmp_path / "big" / "-home-ana-big"
    big.mkdir(parents=True)
    line = (b'{"type":"user","sessionId":"big","uuid":"u%d","cwd":"/w","timestamp":"2026-03-04T10:00:00Z",'
            b'"message":{"role":"user","content":"' + b"x" * 400 + b'"}}\n')
    with open(big / "big.jsonl", "wb") as fh:
        for i in range(LINES):
            fh.write(line % i)
    env = {**os.environ, "CHRONICLE_ROOT": str(ws)}
    log = EventLog(ws / "data" / "log")
    start = log.snapshot().head
    client = subprocess.Popen([sys.executable, "-m", "chronicle", "ingest", "sessions", str(tmp_path / "big")],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    # killed once the ingest has committed something (where in its work the kill lands varies)
    while log.snapshot().head == start:
        assert time.monotonic() < deadline and client.poll() is None, client.stderr.read()
        time.sleep(0.01)
    daemon.proc.send_signal(signal.SIGKILL)
    daemon.proc.wait()
    out, err = client.communicate(timeout=60)
    assert client.returncode == 3, (out, err)
    assert b"stopped before the command finished" in err
    assert run_cli("verify", root=ws).returncode == 0
    # the socket the dead daemon left is no one's: this client runs the command itself, from where it stopped
    run_cli("ingest", "sessions", str(tmp_path / "big"), root=ws, check=True)
    assert served_commands(ws) == []
    counted = json.loads(run_cli("sql", "SELECT count(*) AS n FROM \"session.line\"", "--json", root=ws,
                                 check=True).stdout)
    assert counted["n"] == LINES  # every line once: none lost, none twice
    # a daemon started again takes the socket over
    daemon.start()
    assert run_cli("show", "events_by_type", root=ws).returncode == 0
    assert served_commands(ws) == ["show events_by_type"]


def test_the_socket_is_this_users_and_a_long_path_gets_a_short_one(tmp_path: Path) -> None:
    deep = tmp_path / ("a-folder-with-a-long-name-" * 4) / "ws"
    d = Daemon(workspace(deep))
    d.start()
    try:
        sock = Path(d.state()["socket"])
        assert sock.parent == Path("/tmp") / f"chronicle-{os.getuid()}"
        assert stat.S_IMODE(sock.parent.stat().st_mode) == 0o700
        assert stat.S_ISSOCK(sock.stat().st_mode) and stat.S_IMODE(sock.stat().st_mode) == 0o600
        assert run_cli("show", "events_by_type", root=deep).returncode == 0
        assert served_commands(deep) == ["show events_by_type"]
    finally:
        d.proc.send_signal(signal.SIGTERM)
        d.proc.wait(timeout=30)
    assert not sock.exists()  # a daemon that stops takes its socket away


def test_a_served_command_waiting_for_a_lock_says_who_holds_it_and_gives_up_with_wait(daemon: Daemon,
                                                                                       tmp_path: Path) -> None:
    import fcntl

    shutil.copytree(EXAMPLES, tmp_path / "projects")
    fd = os.open(daemon.ws / "data" / "log" / "LOCK", os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX)  # a process that stopped while holding it
    try:
        started = time.monotonic()
        proc = run_cli("--wait", "2", "ingest", "sessions", str(tmp_path / "projects"), root=daemon.ws)
        waited = time.monotonic() - started
    finally:
        os.close(fd)
    assert proc.returncode == 3 and 1.5 < waited < 20, (proc.returncode, waited, proc.stderr)
    err = proc.stderr.decode()
    assert f"held by pid {os.getpid()}" in err and "gave up (--wait)" in err and "waiting for" in err
    assert served_commands(daemon.ws) == [f"ingest sessions {tmp_path / 'projects'}"]
    # the lock free again, the same command goes through
    assert run_cli("ingest", "sessions", str(tmp_path / "projects"), root=daemon.ws).returncode == 0


def test_a_request_from_another_version_or_of_nonsense_is_declined_not_run(daemon: Daemon) -> None:
    import socket

    from chronicle import __version__, served

    def ask(payload: bytes, fds: int = 2) -> dict:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock, open(os.devnull, "w") as sink:
            sock.connect(str(served.socket_path(daemon.ws)))
            socket.send_fds(sock, [payload], [sink.fileno()] * fds)
            sock.shutdown(socket.SHUT_WR)
            return json.loads(sock.makefile("rb").readline())

    request = {"version": [served.PROTOCOL, __version__], "argv": ["status"], "root": str(daemon.ws),
               "env": served.compared_env(os.environ), "encoding": "utf-8", "errors": "strict"}
    assert ask(json.dumps(request).encode() + b"\n") == {"exit": 0}
    older = {**request, "version": [served.PROTOCOL, "0.0.1"]}
    assert "restart `chronicle watch`" in ask(json.dumps(older).encode() + b"\n")["declined"]
    assert "declined" in ask(b"not json\n")
    assert "declined" in ask(json.dumps({"argv": ["status"]}).encode() + b"\n")
    assert "declined" in ask(json.dumps(request).encode() + b"\n", fds=1)
    assert served_commands(daemon.ws) == ["status"]
