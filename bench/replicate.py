"""Replicate the shared real Claude Code transcripts into a large projects tree.

Every copy varies every id a reader joins or deduplicates on (UUIDs, message ids,
requestIds, tool ids, agent ids, in file names too) and shifts its timestamps by
whole days, so a copy is new sessions, new API calls and new days, never a
duplicate the readers would fold away. ``--copies 640`` gives about 700 MB:
80 trees of the 33 real files, each file holding 8 varied copies of itself.

    python bench/replicate.py OUT_DIR [--copies 640] [--source DIR]
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import re
from pathlib import Path

SOURCE = (Path(__file__).resolve().parents[2] / "shared/corpus/claude-code/claude-code-log/test/test_data/real_projects")
PER_FILE = 8  # copies concatenated into one file: fewer, larger files, as long-lived sessions are
_UUID = re.compile(rb"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_API_ID = re.compile(rb"\b(msg_|req_|toolu_|call_)([A-Za-z0-9]{8,})")
_STAMP = re.compile(rb'"timestamp":"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z)"')


def _hex(seed: bytes, n: int) -> bytes:
    return hashlib.blake2b(seed, digest_size=16).hexdigest()[:n].encode()


class Variant:
    """One copy: a consistent renaming of ids (the same id maps to the same new id
    everywhere, so links between records and files hold) and a shift in days."""

    def __init__(self, copy: int, agents: list[bytes]):
        self.tag = str(copy).encode()
        self.days = copy % 365
        self._agent_ids = {a: _hex(b"agent" + self.tag + a, len(a)) for a in agents}
        self._agents = re.compile(b"|".join(re.escape(a) for a in sorted(agents, key=len, reverse=True))) if agents else None

    def uuid(self, m: re.Match) -> bytes:
        h = _hex(self.tag + m.group(0), 32)
        return b"-".join((h[:8], h[8:12], b"4" + h[13:16], b"8" + h[17:20], h[20:32]))

    def api_id(self, m: re.Match) -> bytes:
        return m.group(1) + _hex(self.tag + m.group(0), len(m.group(2)))

    def stamp(self, m: re.Match) -> bytes:
        t = dt.datetime.fromisoformat(m.group(1).decode().replace("Z", "+00:00")) + dt.timedelta(days=self.days)
        return b'"timestamp":"' + t.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3].encode() + b'Z"'

    def text(self, data: bytes) -> bytes:
        data = _UUID.sub(self.uuid, data)
        data = _API_ID.sub(self.api_id, data)
        if self._agents is not None:
            data = self._agents.sub(lambda m: self._agent_ids[m.group(0)], data)
        return _STAMP.sub(self.stamp, data)

    def name(self, rel: str) -> str:
        return self.text(rel.encode()).decode()


def replicate(out: Path, copies: int = 640, source: Path = SOURCE) -> int:
    """Write ``copies`` varied copies of ``source`` under ``out``; return bytes written."""
    files = sorted(p for p in source.rglob("*.jsonl") if p.is_file())
    if not files:
        raise SystemExit(f"no transcripts under {source}")
    agents = sorted({m.group(1) for p in files for m in re.finditer(rb"agent-([0-9a-f]{6,})", p.name.encode())})
    variants = [Variant(copy, agents) for copy in range(copies)]
    written = 0
    for tree in range(0, copies, PER_FILE):
        # The file's name and place come from its first copy; the rest follow in it.
        first = variants[tree]
        for path in files:
            rel = path.relative_to(source).as_posix()
            dest = out / first.name(rel)
            dest.parent.mkdir(parents=True, exist_ok=True)
            data = path.read_bytes()
            if data and not data.endswith(b"\n"):
                data += b"\n"
            with open(dest, "wb") as fh:
                for variant in variants[tree:tree + PER_FILE]:
                    chunk = variant.text(data)
                    fh.write(chunk)
                    written += len(chunk)
    return written


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path)
    ap.add_argument("--copies", type=int, default=640)
    ap.add_argument("--source", type=Path, default=SOURCE)
    a = ap.parse_args()
    print(f"{replicate(a.out, a.copies, a.source) / 1e6:,.0f} MB written to {a.out}")
