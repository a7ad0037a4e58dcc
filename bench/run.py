"""Store benchmarks against the peers a user would otherwise pick, side by side in one run.

Peers: SQLite in WAL mode with synchronous=FULL (one row per event, commit per
batch: the same durability as an acknowledged chronicle append), and the
`eventsourcing` library's SQLite application recorder. Every figure is the
median of several repeats; ratios are what to read (these machines are noisy).

    make bench                 # or: python bench/run.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import msgspec
import pyarrow as pa

from chronicle.events import Annotation
from chronicle.projection import Engine, discover
from chronicle.store import EventLog

RESULTS = Path(__file__).with_name("results")
_ENC = msgspec.msgpack.Encoder()


def _timed(fn: Callable[[Path], float]) -> float:
    """``fn``'s own timing, in a fresh directory."""
    tmp = Path(tempfile.mkdtemp(prefix="chronicle-bench-"))
    try:
        return fn(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def median_time(fn: Callable[[Path], float], repeats: int) -> float:
    return statistics.median(_timed(fn) for _ in range(repeats))


def side_by_side(fns: dict[str, Callable[[Path], float]], repeats: int) -> dict[str, float]:
    """Median seconds of each contender. Every repeat runs all of them in turn,
    starting one further along each time, so a slow spell of this (noisy)
    machine falls on all sides alike instead of on whoever ran then."""
    names = list(fns)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        for name in names[r % len(names):] + names[: r % len(names)]:
            times[name].append(_timed(fns[name]))
    return {name: statistics.median(t) for name, t in times.items()}


def events(n: int, tag: str = "b") -> list[Annotation]:
    return [Annotation(stream=f"doc:{i % 1000}", event_id=f"{tag}{i}", target=f"doc:{i % 1000}", key="score",
                       value="v" * 80, author="bench") for i in range(n)]


def sqlite_db(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, timeout=60, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE IF NOT EXISTS events (seq INTEGER PRIMARY KEY, event_id TEXT UNIQUE, type TEXT, "
               "stream TEXT, recorded_at INTEGER, size INTEGER, payload BLOB)")
    return db


def sqlite_rows(batch: list[Annotation]) -> list[tuple]:
    now = time.time_ns() // 1000
    out = []
    for ev in batch:
        payload = _ENC.encode(ev)
        out.append((ev.event_id, "annotation", ev.stream, now, len(payload), payload))
    return out


# ------------------------------------------------------------ batched append

def batched(n: int, batch: int, repeats: int) -> dict:
    data = events(n)
    chunks = [data[i : i + batch] for i in range(0, n, batch)]

    def chronicle(tmp: Path) -> float:
        log = EventLog.init(tmp / "log")
        t = time.perf_counter()
        for c in chunks:
            log.append(c)
        return time.perf_counter() - t

    def sqlite(tmp: Path) -> float:
        db = sqlite_db(tmp / "events.db")
        t = time.perf_counter()
        for c in chunks:
            db.execute("BEGIN")
            db.executemany("INSERT INTO events (event_id, type, stream, recorded_at, size, payload) VALUES (?,?,?,?,?,?)",
                           sqlite_rows(c))
            db.execute("COMMIT")
        return time.perf_counter() - t

    def eventsourcing(tmp: Path) -> float:
        from eventsourcing.persistence import StoredEvent
        from eventsourcing.sqlite import SQLiteApplicationRecorder, SQLiteDatastore

        recorder = SQLiteApplicationRecorder(SQLiteDatastore(str(tmp / "es.db")))
        recorder.create_table()
        t = time.perf_counter()
        for c in chunks:
            recorder.insert_events([StoredEvent(uuid.uuid5(uuid.NAMESPACE_URL, ev.event_id), 1, "annotation", _ENC.encode(ev))
                                    for ev in c])
        return time.perf_counter() - t

    secs = side_by_side({"chronicle": chronicle, "sqlite": sqlite, "eventsourcing": eventsourcing}, repeats)
    return {name: n / t for name, t in secs.items()}


# ---------------------------------------------------- concurrent durable appends

CHILD = textwrap.dedent("""
    import sys, sqlite3, time
    from pathlib import Path
    import msgspec
    from chronicle.events import Annotation
    from chronicle.store import EventLog
    kind, path, name, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    evs = [Annotation(stream="doc:c", event_id=f"{name}-{i}", target="t", key="k", value="v" * 80, author=name) for i in range(n)]
    if kind == "chronicle":
        log = EventLog(Path(path))
        write = lambda ev: log.append([ev])
    else:
        db = sqlite3.connect(path, timeout=60, isolation_level=None)
        db.execute("PRAGMA synchronous=FULL")
        enc = msgspec.msgpack.Encoder()
        def write(ev):
            p = enc.encode(ev)
            db.execute("INSERT INTO events (event_id, type, stream, recorded_at, size, payload) VALUES (?,?,?,?,?,?)",
                       (ev.event_id, "annotation", ev.stream, time.time_ns() // 1000, len(p), p))
    print("ready", flush=True)
    sys.stdin.readline()
    start = time.time()
    for ev in evs:
        write(ev)
    print(start, time.time(), flush=True)
    sys.stdin.read()  # exit only once every writer is done: an exit's clean-up is not free CPU
""")


def concurrent(writers: int, total: int, repeats: int) -> dict:
    """Durable single-event appends from ``writers`` processes at once: events
    over the span from the first writer's first append to the last writer's
    last ack. Process start-up and exit are not appends, for either side: the
    writers start together once all are ready and exit together once all are
    done (an interpreter's exit takes CPU the others would be using)."""
    per = max(1, total // writers)

    def run(kind: str) -> Callable[[Path], float]:
        def fn(tmp: Path) -> float:
            if kind == "chronicle":
                EventLog.init(tmp / "log").close()
                target = tmp / "log"
            else:
                sqlite_db(tmp / "events.db").close()
                target = tmp / "events.db"
            procs = [subprocess.Popen([sys.executable, "-c", CHILD, kind, str(target), f"w{w}", str(per)],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) for w in range(writers)]
            for p in procs:
                assert p.stdout.readline() == "ready\n"  # type: ignore[union-attr]
            for p in procs:
                p.stdin.write("go\n")  # type: ignore[union-attr]
                p.stdin.flush()  # type: ignore[union-attr]
            spans = [[float(x) for x in p.stdout.readline().split()] for p in procs]  # type: ignore[union-attr]
            for p in procs:
                p.stdin.close()  # type: ignore[union-attr]
                assert p.wait() == 0
            return max(end for _, end in spans) - min(start for start, _ in spans)
        return fn

    secs = side_by_side({kind: run(kind) for kind in ("chronicle", "sqlite")}, repeats)
    return {kind: writers * per / t for kind, t in secs.items()}


# ------------------------------------------------------------------ seal

def seal(n: int, repeats: int) -> dict:
    data = events(n)
    sizes = []

    def fn(tmp: Path) -> float:
        log = EventLog.init(tmp / "log")
        for i in range(0, n, 5000):
            log.append(data[i : i + 5000])
        sizes.append(sum(p.stat().st_size for p in log.wal_dir.glob("*.wal")))
        t = time.perf_counter()
        log.seal()
        return time.perf_counter() - t

    secs = median_time(fn, repeats)
    return {"chronicle_mb_s": statistics.median(sizes) / secs / 1e6, "events_s": n / secs}


# --------------------------------------------------------------- rebuild

def rebuild(n: int, repeats: int) -> dict:
    chunk = 250_000
    results: dict[str, list[float]] = {"chronicle": [], "sqlite": []}
    tmp = Path(tempfile.mkdtemp(prefix="chronicle-bench-"))
    try:
        log = EventLog.init(tmp / "log")
        db = sqlite_db(tmp / "events.db")
        for start in range(0, n, chunk):
            m = min(chunk, n - start)
            ids = [f"r{start + i}" for i in range(m)]
            streams = [f"doc:{i % 1000}" for i in range(m)]
            log.append_table("annotation", pa.table({
                "stream": streams, "event_id": ids, "target": streams, "key": ["score"] * m,
                "value": ["v" * 80] * m, "author": ["bench"] * m}))
        env = log.snapshot().envelope().collect()
        db.execute("BEGIN")
        db.executemany("INSERT INTO events (seq, event_id, type, stream, recorded_at, size, payload) VALUES (?,?,?,?,?,?,?)",
                       ((s, e, t, st, r, z, b"") for s, e, t, st, r, z in zip(
                           env["seq"], env["event_id"], env["type"], env["stream"],
                           env["recorded_at"].dt.epoch("us"), env["size"])))
        db.execute("COMMIT")
        projections = {k: v for k, v in discover().items() if k == "events_by_type"}
        for r in range(repeats):
            t = time.perf_counter()
            Engine(tmp / f"tables{r}", projections).run(log.snapshot(), full=True)
            results["chronicle"].append(time.perf_counter() - t)
            t = time.perf_counter()
            db.execute("SELECT date(recorded_at / 1000000, 'unixepoch') AS day, type, count(*), sum(size), min(seq), "
                       "max(seq) FROM events GROUP BY day, type ORDER BY day, type").fetchall()
            results["sqlite"].append(time.perf_counter() - t)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {k: n / statistics.median(v) for k, v in results.items()}


# ------------------------------------------------------- sessions ingest

INGEST_CHILD = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from chronicle.ingest.sessions import SessionIngester
    from chronicle.workspace import Workspace
    ws = Workspace.at(sys.argv[1]); ws.init()
    t = time.perf_counter()
    SessionIngester(ws.open_log(), ws.data / "ingest.lock", quiet_seconds=0).run([Path(sys.argv[2])])
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the (large) parent across fork + exec.
    hwm = next(int(x.split()[1]) for x in open("/proc/self/status") if x.startswith("VmHWM:"))
    print(time.perf_counter() - t, hwm * 1024)
""")


def sessions_ingest(mb: float, single_mb: float, repeats: int) -> dict:
    """Ingest of a generated transcript tree vs DuckDB read_json_auto -> Parquet (which keeps
    a parsed, lossy copy, not the bytes); re-ingest of the unchanged tree; usage_daily; and
    peak memory ingesting one large file. Each run is a fresh process and workspace."""
    import duckdb

    from transcripts import generate

    tmp = Path(tempfile.mkdtemp(prefix="chronicle-bench-"))
    try:
        tree = tmp / "tree"
        size = generate(tree, mb)
        ours, duck = [], []
        for r in range(repeats):
            out = subprocess.run([sys.executable, "-c", INGEST_CHILD, str(tmp / f"ws{r}"), str(tree)],
                                 capture_output=True, text=True, check=True).stdout.split()
            ours.append(float(out[0]))
            # Tuned as a user would have to: with insertion order kept, or a 100 MB object
            # limit, DuckDB runs out of memory on this tree.
            con = duckdb.connect()
            con.execute("SET preserve_insertion_order=false")
            t = time.perf_counter()
            con.execute(f"COPY (SELECT * FROM read_json_auto('{tree}/**/*.jsonl', format='newline_delimited', "
                        f"union_by_name=true, ignore_errors=true, maximum_object_size=16777216)) "
                        f"TO '{tmp}/duck{r}.parquet' (FORMAT parquet)")
            duck.append(time.perf_counter() - t)
            con.close()
        from chronicle.ingest.sessions import SessionIngester
        from chronicle.workspace import Workspace

        ws = Workspace.at(tmp / "ws0")
        t = time.perf_counter()
        SessionIngester(ws.open_log(), ws.data / "ingest.lock", quiet_seconds=0).run([tree])
        reingest = time.perf_counter() - t
        t = time.perf_counter()
        Engine(ws.tables_dir, discover()).run(ws.open_log().snapshot(), ["usage"], full=True)
        usage = time.perf_counter() - t
        single = tmp / "single"
        single_size = generate(single, single_mb, single_file=True)
        out = subprocess.run([sys.executable, "-c", INGEST_CHILD, str(tmp / "ws-single"), str(single)],
                             capture_output=True, text=True, check=True).stdout.split()
        return {"tree_mb": size / 1e6, "chronicle_mb_s": size / 1e6 / statistics.median(ours),
                "duckdb_mb_s": size / 1e6 / statistics.median(duck),
                "reingest_s_per_gb": reingest / (size / 1e9), "usage_daily_s_per_gb": usage / (size / 1e9),
                "single_file_mb": single_size / 1e6, "single_file_peak_rss_mb": int(out[1]) / 1e6}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smaller sizes (a smoke run)")
    args = ap.parse_args()
    scale = 0.1 if args.quick else 1.0
    reps = 3
    report: dict = {"machine": {"cores": os.cpu_count(), "python": sys.version.split()[0]}}

    def line(label: str, ours: float, peers: dict[str, float], unit: str = "events/s") -> None:
        ratios = "  ".join(f"{ours / v:5.2f}x {k}" for k, v in peers.items())
        print(f"{label:<34} {ours:>12,.0f} {unit:<9} {ratios}", flush=True)

    # The store's parts are quick and the noisiest: more repeats.
    b = batched(int(100_000 * scale), 1000, 2 * reps + 1)
    report["batched_append"] = b
    line("batched append (1000/batch)", b["chronicle"], {k: v for k, v in b.items() if k != "chronicle"})
    for w in (1, 4, 16):
        c = concurrent(w, int(3_000 * scale) or 100, 2 * reps + 1)
        report[f"concurrent_{w}"] = c
        line(f"durable single appends, {w:>2} writers", c["chronicle"], {"sqlite": c["sqlite"]})
    s = seal(int(100_000 * scale), reps)
    report["seal"] = s
    print(f"{'seal (WAL -> zstd Parquet)':<34} {s['chronicle_mb_s']:>12,.1f} MB/s      ({s['events_s']:,.0f} events/s)")
    r = rebuild(int(1_000_000 * scale), reps)
    report["rebuild_events_by_type"] = r
    line("rebuild events_by_type", r["chronicle"], {"sqlite GROUP BY": r["sqlite"]})
    si = sessions_ingest(500 * scale, 1000 * scale, reps)
    report["sessions_ingest"] = si
    line(f"ingest sessions ({si['tree_mb']:,.0f} MB tree)", si["chronicle_mb_s"],
         {"duckdb read_json_auto": si["duckdb_mb_s"]}, unit="MB/s")
    print(f"{'re-ingest, unchanged tree':<34} {si['reingest_s_per_gb']:>12,.2f} s/GB")
    print(f"{'usage_daily rebuild':<34} {si['usage_daily_s_per_gb']:>12,.2f} s/GB")
    print(f"{'peak memory, one file':<34} {si['single_file_peak_rss_mb']:>12,.0f} MB       "
          f"(file of {si['single_file_mb']:,.0f} MB)")
    import experiments as experiment_bench

    ro = experiment_bench.runner_overhead(int(2000 * scale) or 200, 64, 20, reps)
    report["runner_overhead"] = ro
    print(f"{'runner: 2,000 calls, c=64, 20 ms':<34} {ro['chronicle_of_ideal']:>12.0%} of ideal   "
          f"(bare aiohttp, recording nothing: {ro['bare_of_ideal']:.0%})")
    dr = experiment_bench.documents_rebuild(int(1_000_000 * scale), reps)
    report["documents_rebuild"] = dr
    print(f"{'rebuild documents + score tables':<34} {dr['chronicle_s']:>12.2f} s        "
          f"{dr['speedup']:5.2f}x sqlite documents index ({dr['documents']:,} documents)")
    import daemon as daemon_bench

    dm = daemon_bench.run(1000 * scale, 30)
    report["watch_daemon"] = dm
    print(f"{'watch: line -> api_calls row':<34} {dm['latency_p95_s']:>12,.2f} s p95   (p50 {dm['latency_p50_s']:.2f} s)")
    print(f"{'watch: idle CPU':<34} {dm['idle_cpu_percent']:>12,.2f} % of a core")
    print(f"{'watch: resident memory':<34} {dm['rss_mb_after_ingest']:>12,.0f} MB after {dm['tree_mb']:,.0f} MB "
          f"ingested (peak {dm['peak_rss_mb']:,.0f} MB)")
    import web as web_bench

    wb = web_bench.run(int(250_000 * scale), int(500 * scale), 500, 15)
    report["web_viewer"] = wb
    print(f"{'viewer: slowest page, warm p95':<34} {wb['worst_p95_ms']:>12,.0f} ms       "
          f"({wb['events']:,} events; slowest cold {wb['worst_cold_ms']:,.0f} ms; "
          f"bare aiohttp page {wb['floor_p50_ms']:.1f} ms)")
    import search as search_bench

    if shutil.which("rg") is None:
        print("search vs ripgrep: skipped (apt-get install ripgrep)")
    else:
        sb = search_bench.run(700 * scale, 5)
        report["search"] = sb
        print(f"{'search, rare word, warm':<34} {sb['rare_chronicle_s'] * 1000:>12,.0f} ms       "
              f"{sb['rare_ratio']:5.2f}x rg -c ({sb['tree_mb']:,.0f} MB of transcripts)")
        print(f"{'search, common word, warm':<34} {sb['common_chronicle_s'] * 1000:>12,.0f} ms       "
              f"{sb['common_ratio']:5.2f}x rg -c")
        print(f"{'search index build':<34} {sb['index_build_s_per_gb']:>12,.1f} s/GB     "
              f"({sb['index_mb']:,.0f} MB index); one new line found in {sb['one_new_line_search_s']:.2f} s")
    import union as union_bench

    ub = union_bench.run(int(1_000_000 * scale), 2 * reps + 1)
    report["union"] = ub
    union_bench.report(ub)
    import remote_sync

    rs = remote_sync.run(int(1024 * scale), reps)
    report["remote_sync"] = rs
    remote_sync.report(rs)
    import secret_scan as secrets_bench

    sec = secrets_bench.run(int(320 * scale) or 32, reps)
    report["secrets"] = sec
    secrets_bench.report(sec)
    import training

    tr = training.run(int(160 * scale) or 16, reps)
    report["training"] = tr
    training.report(tr)
    import keepup

    if shutil.which("npm") is None and not os.environ.get("CCUSAGE") and shutil.which("ccusage") is None:
        print("tables keeping up vs ccusage: skipped (needs npm or ccusage)")
    else:
        ku = keepup.run(int(640 * scale) or 64, reps)
        report["keepup"] = ku
        keepup.report(ku)
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "latest.json"
    out.write_text(json.dumps(report, indent=1))
    print(f"\nmedians of {reps} repeats ({2 * reps + 1} for appends, taking turns with the peers); "
          f"ratios are chronicle / peer; written to {out}")


if __name__ == "__main__":
    main()
