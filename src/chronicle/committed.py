"""How projection tables are committed and read: all of a projection's tables at once.

A projection's tables are written whole into a new *generation* folder,
``data/tables/.gen/<projection>/<seq>-<pid>-<token>/``, and fsynced. The commit
is one atomic rename: ``_checkpoints.json`` names the generation beside the
checkpoint (seq, code version, rows, each file's size, mtime and sha256). So the
tables and their checkpoint change together or not at all, and a reader that
resolves tables through one read of ``_checkpoints.json`` sees every table of a
projection at one checkpoint (:class:`Committed`, :func:`read_tables`).

After the commit each table is *published*: hard-linked (the same bytes, no
copy) to ``data/tables/<table>.parquet`` and ``.csv``, the plain files other
engines (DuckDB, Spark, a notebook) read, each replaced by one rename. A crash
before publishing leaves the committed generation; the next engine run for the
projection publishes it. Generations no checkpoint names are removed under the
projection's build lock; a reader that finds its generation gone (a newer one
committed meanwhile) reads ``_checkpoints.json`` again.

Kept apart from the engine (what to build) as delta-rs keeps its commit
protocol apart from the object store: this module knows files, not Polars
expressions. A checkpoint without a generation (written before generations)
names the plain files themselves.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
from collections.abc import Iterable
from functools import partial
from pathlib import Path

from chronicle.store.fsutil import fsync_dir, locked, write_durably

CHECKPOINTS = "_checkpoints.json"
GENERATIONS = ".gen"
_RETRIES = 20  # a reader that keeps losing its generation to newer commits gives up after this many


class Committed:
    """One read of ``_checkpoints.json``: which file holds each table at its checkpoint."""

    def __init__(self, tables_dir: Path, checkpoints: dict[str, dict]):
        self.tables_dir = tables_dir
        self.checkpoints = checkpoints
        self._owner = {t: name for name, cp in checkpoints.items() for t in cp.get("rows", {})}

    @classmethod
    def at(cls, tables_dir: Path) -> Committed:
        return cls(tables_dir, load_checkpoints(tables_dir))

    def projection_of(self, table: str) -> str | None:
        return self._owner.get(table)

    def seq(self, table: str) -> int | None:
        owner = self._owner.get(table)
        return None if owner is None else self.checkpoints[owner]["seq"]

    def files(self, table: str) -> list[Path]:
        """The committed Parquet files of ``table``, in order: one, or its parts (a large
        table); the plain file for a table no checkpoint names."""
        owner = self._owner.get(table)
        return table_files(self.tables_dir, self.checkpoints[owner] if owner is not None else {}, table)


def table_files(target: Path, cp: dict, table: str) -> list[Path]:
    """The Parquet files a checkpoint names for ``table``: ``<table>.parquet``, or
    ``<table>/part-NNNNN.parquet`` when it was written in parts."""
    base = target / cp["gen"] if cp.get("gen") else target
    parts = cp.get("parts", {}).get(table)
    return [base / part_name(table, i) for i in range(parts)] if parts else [base / f"{table}.parquet"]


def part_name(table: str, i: int) -> str:
    return f"{table}/part-{i:05d}.parquet"


def load_checkpoints(tables_dir: Path) -> dict[str, dict]:
    try:
        return json.loads((tables_dir / CHECKPOINTS).read_text())
    except FileNotFoundError:
        return {}


def open_tables(tables_dir: Path, tables: Iterable[str]) -> tuple[Committed, dict[str, list]]:
    """Open the committed files of ``tables`` (each a list: one file, or its parts), all
    from one read of the checkpoints; open file objects (the caller closes them) go on
    reading their bytes even if a newer commit removes their generation."""
    names = list(tables)
    for _ in range(_RETRIES):
        committed = Committed.at(tables_dir)
        handles: dict[str, list] = {}
        try:
            for t in names:
                handles[t] = []
                for path in committed.files(t):
                    handles[t].append(open(path, "rb"))
            return committed, handles
        except FileNotFoundError:
            for opened in handles.values():
                for fh in opened:
                    fh.close()
            if not any(committed.projection_of(t) for t in names):
                raise  # never built: nothing newer will appear by asking again
    raise OSError(f"{tables_dir}: tables {names} kept being replaced while being opened")


def write_generation(target: Path, projection: str, seq: int, tables: dict[str, object],
                     known: dict[str, list] | None = None) -> tuple[str, dict[str, list]]:
    """Write a generation: ``tables`` maps a file name (``api_calls.parquet``, or a
    part: ``messages/part-00002.parquet``) to a function that writes it to a given
    path, or to the Path of an identical file of the previous generation (a table or
    part the update left as it was: hard-linked, not written again). Returns the
    generation's path relative to ``target`` and, per Parquet file (by name without
    ``.parquet``), [bytes, mtime ns, sha256]; ``known`` (the previous generation's)
    gives a linked file's sha256 without reading it again (the same inode: the same
    size and mtime), and a linked file, durable already, is not synced again."""
    known = known or {}
    rel = f"{GENERATIONS}/{projection}/{seq:012d}-{os.getpid()}-{secrets.token_hex(4)}"
    gen = target / rel
    gen.mkdir(parents=True)
    try:
        from concurrent.futures import ThreadPoolExecutor

        jobs = []
        for name, write in tables.items():
            (gen / name).parent.mkdir(exist_ok=True)
            jobs.append(partial(_link, write, gen / name) if isinstance(write, Path) else partial(write, gen / name))
        # Polars releases the GIL while it encodes: the tables are written side by side.
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
            for done in [pool.submit(job) for job in jobs]:
                done.result()
        files = {}
        for name in sorted(tables):
            key = name.removesuffix(".parquet")
            if isinstance(tables[name], Path) and key in known:
                st = os.stat(gen / name)
                if known[key][:2] == [st.st_size, st.st_mtime_ns]:
                    files[key] = list(known[key])
                    continue
            with open(gen / name, "rb") as fh:
                if name.endswith(".parquet"):
                    digest = hashlib.file_digest(fh, "sha256").hexdigest()
                    st = os.fstat(fh.fileno())
                    files[key] = [st.st_size, st.st_mtime_ns, digest]
                os.fsync(fh.fileno())
        for folder in {(gen / name).parent for name in tables}:
            fsync_dir(folder)
        fsync_dir(gen.parent)
    except BaseException:
        shutil.rmtree(gen, ignore_errors=True)
        raise
    return rel, files


def _link(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:  # a file system without hard links: a copy
        shutil.copyfile(src, dst)


def commit(target: Path, projection: str, entry: dict) -> None:
    """The commit point: ``_checkpoints.json`` names the projection's new checkpoint
    (and generation) in one atomic rename."""
    with locked(target / "_checkpoints.lock"):  # other projections' entries may have changed meanwhile
        checkpoints = load_checkpoints(target)
        checkpoints[projection] = entry
        write_durably(target / CHECKPOINTS, json.dumps(checkpoints, indent=1, sort_keys=True).encode())


def publish(target: Path, entry: dict, tables: Iterable[str]) -> None:
    """Give each committed table its plain name, unless it already has it: ``<table>.parquet``
    (and ``.csv``), or, for a table written in parts, the folder ``<table>/`` of them
    (``read_parquet('<table>/*.parquet')``). Idempotent: run again after a crash."""
    if not entry.get("gen"):
        return
    changed = False
    for t in tables:
        parts = entry.get("parts", {}).get(t)
        if parts:
            folder = target / t
            folder.mkdir(exist_ok=True)
            names = [part_name(t, i) for i in range(parts)]
            changed |= any([_publish_file(target / entry["gen"] / n, target / n) for n in names])
            keep = {Path(n).name for n in names}
            for stale in folder.iterdir():
                if stale.name not in keep:
                    stale.unlink()
                    changed = True
            stale_files = [target / f"{t}.parquet", target / f"{t}.csv"]
        else:
            changed |= _publish_file(target / entry["gen"] / f"{t}.parquet", target / f"{t}.parquet")
            csv = target / entry["gen"] / f"{t}.csv"
            changed |= _publish_file(csv, target / f"{t}.csv") if csv.exists() else False
            stale_files = [] if csv.exists() else [target / f"{t}.csv"]  # a Parquet-only table: no old CSV
            if (target / t).is_dir():  # it was written in parts before
                shutil.rmtree(target / t)
                changed = True
        for stale in stale_files:
            if stale.exists():
                stale.unlink()
                changed = True
    if changed:
        fsync_dir(target)


def _publish_file(src: Path, dst: Path) -> bool:
    """``dst`` made the same file as ``src`` by one rename; whether it had to change."""
    try:
        if os.path.samefile(src, dst):
            return False
    except FileNotFoundError:
        pass
    tmp = dst.with_name(f".{dst.name}.publish")
    tmp.unlink(missing_ok=True)
    _link(src, tmp)
    os.replace(tmp, dst)
    return True


def published(target: Path, entry: dict, tables: Iterable[str]) -> bool:
    if not entry.get("gen"):
        return True
    try:
        return all(os.path.samefile(f, target / f.relative_to(target / entry["gen"]))
                   for t in tables for f in table_files(target, entry, t))
    except FileNotFoundError:
        return False


def collect_garbage(target: Path, projection: str, keep: str | None) -> None:
    """Remove the projection's generations other than ``keep`` (the committed one):
    older ones, and those of builds that died before their commit. Call holding
    the projection's build lock, so no generation is being written."""
    folder = target / GENERATIONS / projection
    if not folder.is_dir():
        return
    for gen in folder.iterdir():
        if keep is None or gen != target / keep:
            shutil.rmtree(gen, ignore_errors=True)
