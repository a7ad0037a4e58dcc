"""Generate a large, realistic Claude Code projects tree for benchmarks.

The mix follows real transcripts: assistant output split one content block
per record (each copy repeating message.id, requestId and usage), tool results
carrying file contents (a few KB, sometimes tens), occasional pasted images
(lines of megabytes), progress and file-history-snapshot records, summaries,
and subagent files in both layouts. Deterministic for a given seed.

    python bench/transcripts.py OUT_DIR --mb 500
"""

from __future__ import annotations

import argparse
import base64
import json
import random
import uuid
from pathlib import Path

MODELS = ["claude-sonnet-4-5-20250929", "claude-opus-4-6", "claude-haiku-4-5-20251001", "claude-sonnet-4-20250514"]
WORDS = ("the quick brown fox jumps over lazy dog function return value error test file module import class "
         "def self data table event log seal segment projection").split()


def _text(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def _dumps(rec: dict) -> str:
    return json.dumps(rec, separators=(",", ":"), ensure_ascii=False) + "\n"


def session_lines(rng: random.Random, sid: str, cwd: str, turns: int, agent: str | None = None) -> list[str]:
    out = []
    parent = None
    t = 1_760_000_000 + rng.randrange(10_000_000)
    base = {"cwd": cwd, "sessionId": sid, "version": "2.1.40", "gitBranch": "main", "userType": "external",
            "isSidechain": agent is not None}
    if agent:
        base["agentId"] = agent

    def rec(**kw) -> dict:
        nonlocal parent, t
        t += rng.randrange(1, 30)
        u = str(uuid.UUID(int=rng.getrandbits(128)))
        r = {**base, "parentUuid": parent, "uuid": u,
             "timestamp": f"2025-11-{1 + (t // 86400) % 28:02d}T{(t // 3600) % 24:02d}:{(t // 60) % 60:02d}:{t % 60:02d}.000Z",
             **kw}
        parent = u
        return r

    for turn in range(turns):
        if rng.random() < 0.02:
            img = base64.b64encode(rng.randbytes(rng.randrange(500_000, 3_000_000))).decode()
            content = [{"type": "text", "text": _text(rng, 20)},
                       {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": img}}]
        else:
            content = _text(rng, rng.randrange(5, 80))
        out.append(_dumps(rec(type="user", message={"role": "user", "content": content})))
        for _call in range(rng.randrange(1, 6)):
            model = rng.choice(MODELS)
            mid, rid = f"msg_{rng.getrandbits(64):016x}", f"req_{rng.getrandbits(64):016x}"
            usage = {"input_tokens": rng.randrange(1, 50), "output_tokens": rng.randrange(10, 2000),
                     "cache_creation_input_tokens": rng.randrange(0, 20000), "cache_read_input_tokens": rng.randrange(0, 200000),
                     "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0}, "service_tier": "standard"}
            blocks = [{"type": "thinking", "thinking": _text(rng, rng.randrange(20, 200)), "signature": "x" * 200},
                      {"type": "text", "text": _text(rng, rng.randrange(10, 150))}]
            tool_id = f"toolu_{rng.getrandbits(64):016x}"
            name = rng.choice(["Read", "Bash", "Edit", "Grep", "Write"])
            blocks.append({"type": "tool_use", "id": tool_id, "name": name,
                           "input": {"command": "pytest -q"} if name == "Bash" else {"file_path": f"{cwd}/src/m{rng.randrange(50)}.py"}})
            for k, b in enumerate(blocks):
                u = dict(usage, output_tokens=1) if k < len(blocks) - 1 else usage
                out.append(_dumps(rec(type="assistant", requestId=rid, message={
                    "model": model, "id": mid, "type": "message", "role": "assistant", "content": [b],
                    "stop_reason": None, "stop_sequence": None, "usage": u})))
            size = rng.choice([200, 1_000, 4_000, 12_000, 40_000])
            result = "\n".join(f"{i:5d}  {_text(rng, 8)}" for i in range(size // 60))
            out.append(_dumps(rec(type="user", message={"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": tool_id, "content": result}]},
                toolUseResult={"type": "text", "file": {"filePath": f"{cwd}/src/x.py", "content": result[:2000]}})))
        if rng.random() < 0.3:
            out.append(_dumps(rec(type="progress", data={"type": "hook_progress", "hookEvent": "PostToolUse"})))
        if rng.random() < 0.2:
            out.append(_dumps({"type": "file-history-snapshot", "messageId": str(uuid.UUID(int=rng.getrandbits(128))),
                               "snapshot": {"trackedFileBackups": {}, "timestamp": "2025-11-01T00:00:00Z"}}))
    return out


def generate(out: Path, mb: float, seed: int = 7, single_file: bool = False) -> int:
    """Write about ``mb`` megabytes of transcripts under ``out``; return bytes written."""
    rng = random.Random(seed)
    target = int(mb * 1e6)
    written = 0
    n = 0
    while written < target:
        project = out / f"-home-user-project{n % 7}"
        sid = str(uuid.UUID(int=rng.getrandbits(128)))
        cwd = f"/home/user/project{n % 7}"
        lines = session_lines(rng, sid, cwd, rng.randrange(20, 120))
        path = out / "big.jsonl" if single_file else project / f"{sid}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as fh:
            fh.writelines(lines)
        written += sum(len(x.encode()) for x in lines)
        if not single_file and rng.random() < 0.3:
            agent = f"{rng.getrandbits(32):08x}"
            sub = session_lines(rng, sid, cwd, rng.randrange(3, 15), agent=agent)
            spath = project / sid / "subagents" / f"agent-{agent}.jsonl"
            spath.parent.mkdir(parents=True, exist_ok=True)
            spath.write_text("".join(sub), encoding="utf-8")
            written += sum(len(x.encode()) for x in sub)
        n += 1
    if not single_file:
        (out / "-home-user-project0" / f"{uuid.UUID(int=1)}.jsonl").write_text(
            _dumps({"type": "summary", "summary": "A benchmark session", "leafUuid": "none"}))
    return written


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path)
    ap.add_argument("--mb", type=float, default=500)
    ap.add_argument("--single-file", action="store_true")
    a = ap.parse_args()
    print(f"{generate(a.out, a.mb, single_file=a.single_file) / 1e6:,.0f} MB written to {a.out}")
