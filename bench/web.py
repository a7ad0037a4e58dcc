"""Viewer page latency on a workspace of 1M events (target: every page under 300 ms).

The workspace: 250,000 documents (prompt, response, parse: 750,000 events) and
250,000 transcript lines in 500 sessions, sealed, every table built. The viewer
runs as `chronicle serve` in its own process; each page is fetched once cold
(the first read of its tables) and then ``repeats`` times warm. Beside it, in
the same run, a bare aiohttp server answering a fixed page of the same size:
the floor any Python web viewer on this machine starts from.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from chronicle.ingest.sessions import SessionIngester  # noqa: E402
from chronicle.projection import Engine, discover  # noqa: E402
from chronicle.workspace import Workspace  # noqa: E402

import experiments as experiment_bench  # noqa: E402

FLOOR_SERVER = """
import sys
from aiohttp import web
body = "x" * int(sys.argv[1])
async def page(request):
    return web.Response(text=body, content_type="text/html")
app = web.Application()
app.router.add_get("/{tail:.*}", page)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[2]), print=lambda *_: None)
"""


def _transcripts(root: Path, sessions: int, lines_per_session: int) -> None:
    for s in range(sessions):
        sid = f"00000000-0000-4000-8000-{s:012d}"
        folder = root / f"-home-bench-p{s % 7}"
        folder.mkdir(parents=True, exist_ok=True)
        out = []
        for i in range(lines_per_session):
            t = f"2026-0{1 + s % 9}-1{s % 10}T10:{i // 60 % 60:02d}:{i % 60:02d}.000Z"
            base = {"cwd": f"/home/bench/p{s % 7}", "sessionId": sid, "version": "2.1.30", "gitBranch": "main",
                    "isSidechain": False, "timestamp": t, "uuid": f"{sid}-{i}", "parentUuid": f"{sid}-{i - 1}"}
            if i % 2 == 0:
                out.append({**base, "type": "user", "message": {"role": "user", "content": f"step {i}: do the next thing"}})
            else:
                out.append({**base, "type": "assistant", "requestId": f"req-{sid}-{i}", "message": {
                    "id": f"msg-{sid}-{i}", "role": "assistant", "model": "claude-sonnet-4-5-20250929",
                    "content": [{"type": "text", "text": "done " * 20}],
                    "usage": {"input_tokens": 100 + i, "output_tokens": 40, "cache_read_input_tokens": 1000}}})
        (folder / f"{sid}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in out))


def _get(url: str) -> tuple[float, int]:
    t = time.perf_counter()
    with urllib.request.urlopen(url, timeout=120) as resp:
        n = len(resp.read())
        assert resp.status == 200, url
    return time.perf_counter() - t, n


def _start(cmd: list[str], env: dict | None = None) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = proc.stdout.readline() if proc.stdout else ""
    return proc, "http://" + line.split("http://", 1)[1].split("/", 1)[0]


def run(documents: int = 250_000, sessions: int = 500, lines: int = 500, repeats: int = 15) -> dict:
    base = Path(tempfile.mkdtemp(prefix="chronicle-bench-web-"))
    try:
        ws = Workspace.at(base / "ws")
        log = ws.init()
        t0 = time.perf_counter()
        experiment_bench._generate(log, documents)
        _transcripts(base / "projects", sessions, lines)
        SessionIngester(log, ws.data / "ingest.lock", quiet_seconds=0).run([base / "projects"])
        log.seal()
        Engine(ws.tables_dir, discover()).run(log.snapshot(), full=True)
        head = log.snapshot().head
        build_s = time.perf_counter() - t0
        log.close()
        env = {**os.environ, "CHRONICLE_ROOT": str(ws.root)}
        proc, url = _start([sys.executable, "-m", "chronicle", "serve", "--port", "0"], env)
        doc = "doc_" + str(documents - 2)  # an evaluation, with an essay and a draft above it
        sid = "00000000-0000-4000-8000-000000000007"
        pages = ["/", "/sessions", "/sessions?sort=cost&page=5", f"/sessions/{sid}", "/documents",
                 "/documents?stage=evaluation&model_id=model-1&page=200", f"/documents/{doc}", "/scores", "/usage",
                 "/events", "/events?type=llm.response&to_seq=500000", f"/events/{head // 2}", f"/history/doc/{doc}"]
        results = {}
        sizes = []
        try:
            for page in pages:
                cold, n = _get(url + page)
                warm = sorted(_get(url + page)[0] for _ in range(repeats))
                sizes.append(n)
                results[page] = {"cold_ms": cold * 1000, "p50_ms": statistics.median(warm) * 1000,
                                 "p95_ms": warm[int(0.95 * (len(warm) - 1))] * 1000, "bytes": n}
        finally:
            proc.terminate()
            proc.wait()
        port = 20000 + os.getpid() % 20000
        floor = subprocess.Popen([sys.executable, "-c", FLOOR_SERVER, str(int(statistics.median(sizes))), str(port)])
        try:
            deadline = time.monotonic() + 20
            while True:
                try:
                    _get(f"http://127.0.0.1:{port}/")
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
            floor_ms = statistics.median(_get(f"http://127.0.0.1:{port}/x")[0] for _ in range(repeats * 4)) * 1000
        finally:
            floor.terminate()
            floor.wait()
        worst = max(r["p95_ms"] for r in results.values())
        return {"events": head, "build_s": build_s, "pages": results, "worst_p95_ms": worst,
                "worst_cold_ms": max(r["cold_ms"] for r in results.values()), "floor_p50_ms": floor_ms}
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    quick = "--quick" in sys.argv
    r = run(25_000, 50, 500, 5) if quick else run()
    for page, v in r["pages"].items():
        print(f"{page:<58} cold {v['cold_ms']:7.1f} ms  p50 {v['p50_ms']:7.1f} ms  p95 {v['p95_ms']:7.1f} ms  "
              f"{v['p50_ms'] / r['floor_p50_ms']:6.1f}x floor")
    print(f"{r['events']:,} events; worst warm p95 {r['worst_p95_ms']:.1f} ms, worst cold {r['worst_cold_ms']:.1f} ms; "
          f"bare aiohttp floor p50 {r['floor_p50_ms']:.2f} ms")
