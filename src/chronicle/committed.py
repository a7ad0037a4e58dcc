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

    def path(self, table: str, suffix: str = ".parquet") -> Path:
        """The committed file of ``table``; the plain file for a table no checkpoint names."""
        owner = self._owner.get(table)
        gen = self.checkpoints[owner].get("gen") if owner is not None else None
        return (self.tables_dir / gen if gen else self.tables_dir) / f"{table}{suffix}"


def load_checkpoints(tables_dir: Path) -> dict[str, dict]:
    try:
        return json.loads((tables_dir / CHECKPOINTS).read_text())
    except FileNotFoundError:
        return {}


def open_tables(tables_dir: Path, tables: Iterable[str]) -> tuple[Committed, dict[str, object]]:
    """Open the committed files of ``tables``, all from one read of the checkpoints;
    open file objects (the caller closes them) go on reading their bytes even if
    a newer commit removes their generation."""
    names = list(tables)
    for _ in range(_RETRIES):
        committed = Committed.at(tables_dir)
        handles: dict[str, object] = {}
        try:
            for t in names:
                handles[t] = open(committed.path(t), "rb")
            return committed, handles
        except FileNotFoundError:
            for fh in handles.values():
                fh.close()  # type: ignore[attr-defined]
            if not any(committed.projection_of(t) for t in names):
                raise  # never built: nothing newer will appear by asking again
    raise OSError(f"{tables_dir}: tables {names} kept being replaced while being opened")


def write_generation(target: Path, projection: str, seq: int, tables: dict[str, object]) -> tuple[str, dict[str, list]]:
    """Write a generation: ``tables`` maps a file name (``api_calls.parquet``) to a
    function that writes it to a given path. Returns the generation's path
    relative to ``target`` and, per Parquet table, [bytes, mtime ns, sha256]."""
    rel = f"{GENERATIONS}/{projection}/{seq:012d}-{os.getpid()}-{secrets.token_hex(4)}"
    gen = target / rel
    gen.mkdir(parents=True)
    try:
        from concurrent.futures import ThreadPoolExecutor

        # Polars releases the GIL while it encodes: the tables are written side by side.
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
            for done in [pool.submit(write, gen / name) for name, write in tables.items()]:
                done.result()
        files = {}
        for f in sorted(gen.iterdir()):
            with open(f, "rb") as fh:
                if f.suffix == ".parquet":
                    digest = hashlib.file_digest(fh, "sha256").hexdigest()
                    st = os.fstat(fh.fileno())
                    files[f.stem] = [st.st_size, st.st_mtime_ns, digest]
                os.fsync(fh.fileno())
        fsync_dir(gen)
        fsync_dir(gen.parent)
    except BaseException:
        shutil.rmtree(gen, ignore_errors=True)
        raise
    return rel, files


def commit(target: Path, projection: str, entry: dict) -> None:
    """The commit point: ``_checkpoints.json`` names the projection's new checkpoint
    (and generation) in one atomic rename."""
    with locked(target / "_checkpoints.lock"):  # other projections' entries may have changed meanwhile
        checkpoints = load_checkpoints(target)
        checkpoints[projection] = entry
        write_durably(target / CHECKPOINTS, json.dumps(checkpoints, indent=1, sort_keys=True).encode())


def publish(target: Path, entry: dict, tables: Iterable[str]) -> None:
    """Give each committed table its plain name (``<table>.parquet``, ``.csv``),
    unless it already has it. Idempotent: run again after a crash."""
    gen = entry.get("gen")
    if not gen:
        return
    changed = False
    for t in tables:
        for suffix in (".parquet", ".csv"):
            src, dst = target / gen / f"{t}{suffix}", target / f"{t}{suffix}"
            try:
                if os.path.samefile(src, dst):
                    continue
            except FileNotFoundError:
                if not src.exists():
                    if suffix == ".csv":  # a Parquet-only table: no CSV of an older build may linger
                        dst.unlink(missing_ok=True)
                    continue
            tmp = target / f".{t}{suffix}.publish"
            tmp.unlink(missing_ok=True)
            try:
                os.link(src, tmp)
            except OSError:  # a file system without hard links: a copy
                shutil.copyfile(src, tmp)
            os.replace(tmp, dst)
            changed = True
    if changed:
        fsync_dir(target)


def published(target: Path, entry: dict, tables: Iterable[str]) -> bool:
    gen = entry.get("gen")
    if not gen:
        return True
    try:
        return all(os.path.samefile(target / gen / f"{t}.parquet", target / f"{t}.parquet") for t in tables)
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
