"""What the viewer reads: tables (cached until their file changes), pages of rows, the live stamp."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from chronicle.committed import CHECKPOINTS, Committed
from chronicle.projection import read_files

PER_PAGE = 50


class TableNotBuilt(LookupError):
    """A page needs a table no rebuild has written yet (the viewer says how to build it)."""

    def __init__(self, name: str):
        super().__init__(name)
        self.name = name


class TableCache:
    """Tables read once and kept until a rebuild commits a new generation of them:
    a page on a big workspace filters a frame in memory instead of reading
    Parquet on every request. A page reads through one :meth:`view`, so every
    table it shows of one projection comes from the same checkpoint."""

    def __init__(self, tables_dir: Path):
        self.dir = tables_dir
        self._cache: dict[str, tuple[tuple, pl.DataFrame]] = {}

    def view(self) -> TableView:
        return TableView(self, Committed.at(self.dir))

    def read(self, committed: Committed, name: str) -> pl.DataFrame | None:
        handles = []
        try:
            for path in committed.files(name):  # open first: a newer commit may remove the generation
                handles.append(open(path, "rb"))
            stamp = tuple((str(fh.name), *_stat(fh)) for fh in handles)
            hit = self._cache.get(name)
            if hit is not None and hit[0] == stamp:
                return hit[1]
            df = read_files(handles)
        except FileNotFoundError:
            if committed.projection_of(name) is None:
                return None
            return self.read(Committed.at(self.dir), name)  # replaced since this page began: the newer one
        finally:
            for fh in handles:
                fh.close()
        self._cache[name] = (stamp, df)
        return df


def _stat(fh) -> tuple[int, int, int]:
    st = os.fstat(fh.fileno())
    return st.st_ino, st.st_size, st.st_mtime_ns


class TableView:
    """The tables as of one read of the checkpoints (one page's worth)."""

    def __init__(self, cache: TableCache, committed: Committed):
        self.cache = cache
        self.committed = committed

    def get(self, name: str) -> pl.DataFrame | None:
        """The table, or None when it has not been built yet. ``name`` is always
        one of the viewer's own constants, never taken from a request."""
        return self.cache.read(self.committed, name)

    def require(self, name: str) -> pl.DataFrame:
        df = self.get(name)
        if df is None:
            raise TableNotBuilt(name)
        return df


@dataclass
class Page:
    rows: list[dict]
    number: int
    pages: int
    total: int

    @classmethod
    def of(cls, df: pl.DataFrame, number: int, per_page: int = PER_PAGE) -> Page:
        pages = max(1, math.ceil(df.height / per_page))
        number = min(max(1, number), pages)
        return cls(df.slice((number - 1) * per_page, per_page).to_dicts(), number, pages, df.height)

    @classmethod
    def of_rows(cls, rows: list[dict], number: int, per_page: int = PER_PAGE) -> Page:
        pages = max(1, math.ceil(len(rows) / per_page))
        number = min(max(1, number), pages)
        return cls(rows[(number - 1) * per_page: number * per_page], number, pages, len(rows))


def live_stamp(data_dir: Path) -> tuple[int, ...]:
    """Changes when an event lands (a WAL file is written: its size does not
    grow, it is preallocated; or the MANIFEST grows) or a table is rebuilt
    (checkpoints rewritten): cheap enough to poll every second."""
    out: list[int] = []
    try:
        with os.scandir(data_dir / "log" / "wal") as entries:
            out += sorted(hash((e.name, e.stat().st_size, e.stat().st_mtime_ns)) for e in entries)
    except FileNotFoundError:
        pass
    for p in (data_dir / "log" / "MANIFEST", data_dir / "tables" / CHECKPOINTS):
        try:
            st = os.stat(p)
            out += [st.st_size, st.st_mtime_ns]
        except FileNotFoundError:
            out += [0, 0]
    return tuple(out)


def conversation(messages: pl.DataFrame, calls: pl.DataFrame | None, api: pl.DataFrame | None) -> list[dict]:
    """Main-thread messages in order; each with its tool calls, a subagent's messages nested under the call that
    spawned it, and the tokens of the API call that produced it."""
    tokens: dict[str, int] = {}
    if api is not None and api.height:
        tokens = dict(zip(api["message_id"].to_list(), api["total_tokens"].to_list()))
    by_message: dict[str, list[dict]] = {}
    if calls is not None:
        for c in calls.sort("call_seq").to_dicts():
            by_message.setdefault(c["message_uuid"], []).append(c)
    rows = messages.sort("seq").to_dicts()
    by_agent: dict[str, list[dict]] = {}
    for m in rows:
        m["tokens"] = tokens.get(m["message_id"]) if m["message_id"] else None
        m["calls"] = by_message.get(m["uuid"], [])
        if m["agent_id"]:
            by_agent.setdefault(m["agent_id"], []).append(m)
    for m in rows:
        for c in m["calls"]:
            c["agent_messages"] = by_agent.pop(c["spawned_agent_id"], []) if c["spawned_agent_id"] else []
    main = [m for m in rows if not m["agent_id"]]
    # subagents whose spawning call is not known are still shown, after the main thread
    for agent, ms in sorted(by_agent.items()):
        main.append({"orphan_agent": agent, "messages": ms})
    return main
