"""Several real processes at once, and a real file-size limit (disk full)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from chronicle.store import EventLog
from chronicle.store.integrity import verify

from conftest import envelope

WRITER = textwrap.dedent("""
    import sys
    from pathlib import Path
    from chronicle.events import Annotation
    from chronicle.store import EventLog
    log = EventLog(Path(sys.argv[1]))
    name, n = sys.argv[2], int(sys.argv[3])
    for i in range(n):
        ack, = log.append([Annotation(stream=f"doc:{name}", event_id=f"{name}-{i}", target="t", key="k", value=str(i), author=name)])
        print(ack.seq, ack.event_id, flush=True)
        if i % 97 == 0:
            log.seal()
""")


def test_concurrent_writers_get_unique_contiguous_seqs(tmp_path: Path) -> None:
    path = tmp_path / "log"
    EventLog.init(path).close()
    writers, per = 6, 150
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(path), f"w{w}", str(per)],
                              stdout=subprocess.PIPE, text=True) for w in range(writers)]
    acked: dict[str, int] = {}
    for p in procs:
        out, _ = p.communicate(timeout=120)
        assert p.returncode == 0
        acked.update((eid, int(seq)) for seq, eid in (line.split() for line in out.splitlines()))
    assert len(acked) == writers * per
    assert sorted(acked.values()) == list(range(1, writers * per + 1)), "a seq was given twice or skipped"
    log = EventLog(path)
    env = envelope(log)
    assert dict(zip(env["event_id"].to_list(), env["seq"].to_list())) == acked
    # Each writer's own events keep their order.
    for w in range(writers):
        mine = [acked[f"w{w}-{i}"] for i in range(per)]
        assert mine == sorted(mine)
    assert verify(log).problems == []


FILLER = textwrap.dedent("""
    import resource, signal, sys
    from pathlib import Path
    from chronicle.events import Annotation
    from chronicle.store import EventLog, StorageFull
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    limit = int(sys.argv[2])
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    log = EventLog(Path(sys.argv[1]))
    i = 0
    try:
        while True:
            batch = [Annotation(stream="doc:f", event_id=f"f-{i + j}", target="t", key="k", value="x" * 500, author="f") for j in range(7)]
            for ack in log.append(batch):
                print("ack", ack.seq, ack.event_id, flush=True)
            i += 7
            if i % 140 == 0:
                log.seal()
    except StorageFull as exc:
        print("full", exc, flush=True)
""")


def test_disk_full_is_a_clear_error_and_loses_nothing(tmp_path: Path) -> None:
    path = tmp_path / "log"
    EventLog.init(path).close()
    proc = subprocess.run([sys.executable, "-c", FILLER, str(path), str(60_000)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    full = [line for line in lines if line.startswith("full ")]
    assert full, "the size limit was never hit"
    assert "no space to write" in full[0] and "the log is unchanged" in full[0] and str(path) in full[0]
    acked = {eid: int(seq) for _, seq, eid in (line.split() for line in lines if line.startswith("ack "))}
    assert len(acked) > 20
    log = EventLog(path)  # without the limit now
    env = envelope(log)
    found = dict(zip(env["event_id"].to_list(), env["seq"].to_list()))
    assert all(found.get(eid) == seq for eid, seq in acked.items())
    assert env["seq"].to_list() == list(range(1, env.height + 1))
    assert verify(log).ok
    log.seal()
    assert verify(log).problems == []
