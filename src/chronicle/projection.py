"""The projection engine: rebuild tables from the log, fully or incrementally.

A projection is a module that declares::

    INPUTS = ["annotation", ...]   # event types; "*" is the envelope of every event
    OUTPUTS = ["table_name", ...]
    def build(inputs: dict[str, pl.LazyFrame]) -> dict[str, pl.DataFrame]: ...

and optionally ``NO_CSV = [table, ...]`` (tables written as Parquet only) and
``update(previous, delta)`` with the same shapes, where
``delta`` holds only events after the checkpoint (or ``update(previous,
delta, inputs)``, which also gets every event, to re-read the streams the
delta touches); the engine uses it for incremental runs, and builds in full
when it raises ``NeedsRebuild``;
returning ``previous`` itself says nothing changed (no table is rewritten).
``build`` must be pure and its output order deterministic; so a projection
whose input types got no new events is left as it is.

Built-in projections live in ``chronicle.projections``; a workspace adds its
own with ``[projections] paths = ["my_projections"]`` in chronicle.toml.

A projection's outputs are committed together with its checkpoint (last seq
+ code version), all of its tables at once: see :mod:`chronicle.committed`.
Changed code forces a full rebuild. No projection may call out (an LLM, the
network): a rebuild has no side effects.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import os
import pkgutil
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

import chronicle.projections as builtin_projections
from chronicle import committed
from chronicle.committed import CHECKPOINTS, Committed
from chronicle.errors import CheckFailed
from chronicle.progress import Progress
from chronicle.projection_code import code_version, shared_source
from chronicle.store import Snapshot
from chronicle.store.errors import CorruptionError, StorageFull, StoreError
from chronicle.store.fsutil import is_full, locked

if TYPE_CHECKING:
    from chronicle.workspace import Workspace

ALL_EVENTS = "*"
#: A table of more rows than this is written in parts of this many rows (see Engine._write;
#: ``[projections] part_rows`` in chronicle.toml).
PART_ROWS = 100_000


class ProjectionError(CheckFailed):
    """A projection failed or is malformed; no table of it was replaced."""


class NeedsRebuild(Exception):
    """Raised by a projection's ``update`` when the new events cannot be merged
    into its previous tables (they withdraw rows it no longer has): the engine
    builds from every event instead."""


@dataclass(frozen=True)
class Projection:
    name: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    build: Callable[[dict[str, pl.LazyFrame]], dict[str, pl.DataFrame]]
    update: Callable[[dict[str, pl.DataFrame], dict[str, pl.LazyFrame]], dict[str, pl.DataFrame]] | None
    code_version: str
    source: str
    #: Tables written as Parquet only (too large to read as CSV).
    no_csv: frozenset[str] = frozenset()
    #: ``update`` takes a third argument: every event of its inputs (lazily), to re-read the streams the delta touches.
    update_reads_all: bool = False
    #: Per table, the columns `chronicle show` prints for people by default (``VIEW``).
    views: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def from_module(cls, module: ModuleType, name: str) -> Projection:
        for attr in ("INPUTS", "OUTPUTS", "build"):
            if not hasattr(module, attr):
                raise ProjectionError(f"projection {name} ({module.__file__}): missing {attr}")
        source = Path(module.__file__ or "").read_bytes()
        if module.__name__.startswith("chronicle.projections."):
            source += shared_source()
        for data_file in getattr(module, "DATA_FILES", ()):  # e.g. taxonomies: part of the code version
            source += Path(data_file).read_bytes()
        return cls(
            name=name,
            inputs=tuple(module.INPUTS),
            outputs=tuple(module.OUTPUTS),
            build=module.build,
            update=getattr(module, "update", None),
            code_version=code_version(source),
            source=module.__file__ or name,
            no_csv=frozenset(getattr(module, "NO_CSV", ())),
            update_reads_all=hasattr(module, "update") and len(inspect.signature(module.update).parameters) >= 3,
            views=dict(getattr(module, "VIEW", {})),
        )


def discover(extra_dirs: list[Path] = ()) -> dict[str, Projection]:
    found: dict[str, Projection] = {}
    for info in pkgutil.iter_modules(builtin_projections.__path__):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"chronicle.projections.{info.name}")
        found[info.name] = Projection.from_module(module, info.name)
    for folder in extra_dirs:
        if not folder.is_dir():
            raise ProjectionError(f"projection folder {folder} does not exist (chronicle.toml [projections] paths)")
        for path in sorted(folder.glob("*.py")):
            if path.stem.startswith("_"):
                continue
            if path.stem in found:
                raise ProjectionError(f"{path}: projection name {path.stem!r} is already taken by {found[path.stem].source}")
            spec = importlib.util.spec_from_file_location(f"chronicle_workspace_projection_{path.stem}", path)
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            try:
                spec.loader.exec_module(module)
            except Exception as exc:
                raise ProjectionError(f"{path}: failed to import: {exc!r}") from exc
            found[path.stem] = Projection.from_module(module, path.stem)
    owners: dict[str, str] = {}
    for p in found.values():
        for table in p.outputs:
            if table in owners:
                raise ProjectionError(f"table {table!r} is produced by both {owners[table]} and {p.name}")
            owners[table] = p.name
    return found


@dataclass(frozen=True)
class Outcome:
    name: str
    action: str  # "built", "updated", "current"
    seq: int
    rows: dict[str, int]


class Engine:
    def __init__(self, tables_dir: Path, projections: dict[str, Projection], *, part_rows: int = PART_ROWS):
        self.tables_dir = tables_dir
        self.projections = projections
        self.part_rows = part_rows

    @classmethod
    def of(cls, ws: Workspace) -> Engine:
        """The workspace's engine: its tables, the built-in projections and its own, its settings.
        The [projects] section of chronicle.toml is recorded first when it changed (the
        ``projects`` table reads it from the log: see ``chronicle.projects``)."""
        from chronicle.projects import record_configuration

        record_configuration(ws)
        return cls(ws.tables_dir, discover(ws.projection_dirs()), part_rows=ws.config.projections.part_rows)

    def checkpoints(self, out_dir: Path | None = None) -> dict[str, dict]:
        return committed.load_checkpoints(out_dir or self.tables_dir)

    def select(self, names: list[str] | None) -> list[Projection]:
        if not names:
            return [self.projections[n] for n in sorted(self.projections)]
        by_table = {t: p for p in self.projections.values() for t in p.outputs}
        chosen: dict[str, Projection] = {}
        for n in names:
            p = self.projections.get(n) or by_table.get(n)
            if p is None:
                known = ", ".join(sorted(self.projections))
                raise ProjectionError(f"unknown projection or table {n!r} (known projections: {known})")
            chosen[p.name] = p
        return [chosen[n] for n in sorted(chosen)]

    def run(self, snapshot: Snapshot, names: list[str] | None = None, *, full: bool = False,
            out_dir: Path | None = None) -> list[Outcome]:
        """Bring the selected projections up to ``snapshot.head``.

        Incremental updates run side by side (Polars releases the GIL; each is small
        and holds its own projection's lock); full builds run one after another, so
        memory peaks with the largest build, not with the sum of them."""
        target = out_dir or self.tables_dir
        target.mkdir(parents=True, exist_ok=True)
        chosen = self.select(names)
        checkpoints = self.checkpoints(target)
        updates = [p for p in chosen if not full and self._reusable(p, checkpoints.get(p.name), snapshot, target)]
        builds = [p for p in chosen if p not in updates]
        bar = Progress(len(chosen), "rebuild", stream=None)
        outcomes: dict[str, Outcome] = {}
        failures: list[BaseException] = []
        try:
            if updates:
                snapshot.types()  # read the WAL's events once, before the threads share the snapshot
                with ThreadPoolExecutor(max_workers=min(len(updates), os.cpu_count() or 1)) as pool:
                    running = {pool.submit(self._run_one, p, snapshot, target, False): p for p in updates}
                    for done in as_completed(running):
                        try:
                            outcomes[running[done].name] = done.result()
                        except BaseException as exc:  # the others still commit; the first failure is raised
                            failures.append(exc)
                        bar.advance(1, running[done].name)
            for p in builds if not failures else ():
                bar.advance(0, p.name)
                outcomes[p.name] = self._run_one(p, snapshot, target, full)
                bar.advance(1, p.name)
        finally:
            bar.close()
        if failures:
            raise failures[0]
        return [outcomes[p.name] for p in chosen]

    def _reusable(self, p: Projection, cp: dict | None, snap: Snapshot, target: Path) -> bool:
        """Whether the projection's tables stand at a checkpoint an update can start from."""
        state = self.state(p, cp, snap.head, target, len(snap.redactions), getattr(snap, "sources", None))
        return state == "ok" or state.startswith("behind")

    def _run_one(self, p: Projection, snap: Snapshot, target: Path, full: bool) -> Outcome:
        # One builder per projection at a time, across processes (the daemon and a
        # `chronicle rebuild` may overlap); checkpoints are re-read under the lock.
        with locked(target / f".{p.name}.lock"):
            return self._run_locked(p, snap, self.checkpoints(target), target, full)

    def state(self, p: Projection, cp: dict | None, head: int, target: Path | None = None,
              redactions: int = 0, sources: list | None = None) -> str:
        """How a projection's tables stand against a log at ``head`` after ``redactions``: "ok",
        "missing", "damaged", "stale code", "redacted since" (built before a redaction: they may
        hold values it took out), "sources changed" (over the union of producers, one grew other
        than last: see ``union``), "ahead of the log" or "behind by N"."""
        target = target or self.tables_dir
        if cp is None or not all(f.exists() for t in p.outputs for f in committed.table_files(target, cp, t)):
            return "missing"
        if not tables_intact(target, p.outputs, cp):
            return "damaged"
        if cp["code"] != p.code_version:
            return "stale code"
        if cp.get("redactions", 0) != redactions:
            return "redacted since"
        if sources is not None and cp.get("sources") != sources and not sources_extend(cp.get("sources"), sources):
            return "sources changed"
        if cp["seq"] > head:
            return "ahead of the log"
        return "ok" if cp["seq"] == head else f"behind by {head - cp['seq']}"

    def _run_locked(self, p: Projection, snap: Snapshot, checkpoints: dict, target: Path, full: bool) -> Outcome:
        cp = checkpoints.get(p.name)
        if cp is not None and cp["seq"] > snap.head and target == self.tables_dir and snap.head == snap.full_head:
            raise CorruptionError(str(target / CHECKPOINTS), 0, None,
                                  f"projection {p.name} is at seq {cp['seq']}, beyond the log's head {snap.head}: "
                                  "events it was built from are missing from the log")
        if cp is not None and not committed.published(target, cp, p.outputs):
            committed.publish(target, cp, p.outputs)  # a build that died between its commit and publishing
        # the generations of builds that died before their commit, even when nothing is to be built now
        committed.collect_garbage(target, p.name, (cp or {}).get("gen"))
        state = self.state(p, cp, snap.head, target, len(snap.redactions), getattr(snap, "sources", None))
        reusable = not full and (state == "ok" or state.startswith("behind"))
        if reusable and cp["seq"] == snap.head:
            return Outcome(p.name, "current", snap.head, cp.get("rows", {}))
        if reusable and ALL_EVENTS not in p.inputs and not snap.has_events(p.inputs, cp["seq"]):
            # build is pure over its inputs and none arrived: the tables stand as they are.
            committed.commit(target, p.name, {**cp, "seq": snap.head,
                                              **({"sources": snap.sources} if getattr(snap, "sources", None) else {})})
            return Outcome(p.name, "current", snap.head, cp.get("rows", {}))
        try:
            result = None
            previous = self._previous(p, target, cp) if reusable and p.update is not None else None
            if previous is not None:
                try:
                    delta = self._inputs(p, snap, after=cp["seq"])
                    result = (p.update(previous, delta, self._inputs(p, snap)) if p.update_reads_all
                              else p.update(previous, delta))
                    action = "updated"
                except NeedsRebuild:
                    pass
            if result is None:
                result, action = p.build(self._inputs(p, snap)), "built"
            self._check(p, result)
        except (ProjectionError, StoreError):
            raise
        except Exception as exc:
            raise ProjectionError(f"projection {p.name} failed: {type(exc).__name__}: {exc}") from exc
        rows = {t: result[t].height for t in p.outputs}
        entry = {"seq": snap.head, "code": p.code_version, "rows": rows}
        if snap.redactions:  # built from the log as those left it
            entry["redactions"] = len(snap.redactions)
        if getattr(snap, "sources", None) is not None:  # over the union: what its seqs stand on
            entry["sources"] = snap.sources
        if action == "updated" and result is previous:  # an update that changed nothing rewrites nothing
            entry |= {"files": cp.get("files"), "gen": cp.get("gen")}
        else:
            entry |= self._write(p, result, target, snap.head, previous, cp)
        committed.commit(target, p.name, entry)
        committed.publish(target, entry, p.outputs)
        committed.collect_garbage(target, p.name, entry.get("gen"))
        return Outcome(p.name, action, snap.head, rows)

    @staticmethod
    def _previous(p: Projection, target: Path, cp: dict) -> dict[str, pl.DataFrame] | None:
        """The tables an update merges into; None when one cannot be read (a damaged
        table is rebuilt from the log, never merged into)."""
        try:
            return {t: read_files(committed.table_files(target, cp, t)) for t in p.outputs}
        except (OSError, pl.exceptions.PolarsError):
            return None

    @staticmethod
    def _inputs(p: Projection, snap: Snapshot, after: int | None = None) -> dict[str, pl.LazyFrame]:
        inputs = {}
        for name in p.inputs:
            frame = snap.envelope() if name == ALL_EVENTS else snap.frame(name)
            inputs[name] = frame if after is None else frame.filter(pl.col("seq") > after)
        return inputs

    @staticmethod
    def _check(p: Projection, result: object) -> None:
        if not isinstance(result, dict) or set(result) != set(p.outputs):
            got = sorted(result) if isinstance(result, dict) else type(result).__name__
            raise ProjectionError(f"projection {p.name} returned {got}, expected tables {sorted(p.outputs)}")
        for t, df in result.items():
            if not isinstance(df, pl.DataFrame):
                raise ProjectionError(f"projection {p.name}: table {t} is a {type(df).__name__}, not a polars DataFrame")

    def _write(self, p: Projection, result: dict[str, pl.DataFrame], target: Path, seq: int,
               previous: dict[str, pl.DataFrame] | None = None, cp: dict | None = None) -> dict:
        """Write a new generation of the tables (not yet committed): its "gen", "files"
        and "parts". A table of more than ``part_rows`` rows is written in parts of that
        many rows (Parquet only); a part equal to the same part of the previous
        tables is linked from their generation, not written again, so an update
        that adds rows at the end of a large table writes its last part. A whole
        table an update left equal is linked the same way."""
        writers: dict[str, object] = {}
        parts: dict[str, int] = {}
        for t, df in result.items():
            if df.height <= self.part_rows:
                old = target / cp["gen"] if previous is not None and cp is not None and cp.get("gen") else None
                if (old is not None and t in previous and not cp.get("parts", {}).get(t)  # type: ignore[union-attr]
                        and (old / f"{t}.parquet").exists() and df.equals(previous[t])):  # type: ignore[index]
                    # an update that left this table as it was: linked, not written again
                    writers[f"{t}.parquet"] = old / f"{t}.parquet"
                    if t not in p.no_csv:
                        writers[f"{t}.csv"] = old / f"{t}.csv" if (old / f"{t}.csv").exists() else partial(_write_csv, df)
                    continue
                writers[f"{t}.parquet"] = partial(df.write_parquet, compression="zstd")
                if t not in p.no_csv:
                    writers[f"{t}.csv"] = partial(_write_csv, df)
                continue
            parts[t] = -(-df.height // self.part_rows)
            before = previous.get(t) if previous is not None and cp is not None else None
            had = (cp or {}).get("parts", {}).get(t, 0)
            for i in range(parts[t]):
                chunk = df.slice(i * self.part_rows, self.part_rows)
                name = committed.part_name(t, i)
                if before is not None and i < had and chunk.equals(before.slice(i * self.part_rows, self.part_rows)):
                    writers[name] = target / cp["gen"] / name  # type: ignore[index]
                else:
                    writers[name] = partial(chunk.write_parquet, compression="zstd")
        try:
            gen, files = committed.write_generation(target, p.name, seq, writers, (cp or {}).get("files"))
            return {"gen": gen, "files": files, **({"parts": parts} if parts else {})}
        except OSError as exc:
            if is_full(exc):
                raise StorageFull(f"{target}: no space to write the tables of {p.name} ({os.strerror(exc.errno or 0)}); "
                                  "the previous tables are unchanged") from None
            raise StorageFull(f"{target}: could not write the tables of {p.name} ({exc}); "
                              "the previous tables are unchanged") from None
        except pl.exceptions.PolarsError as exc:
            # Polars reports a failed write (a full disk, a file-size limit) as a damaged file.
            raise StorageFull(f"{target}: could not write the tables of {p.name} (is the disk full? "
                              f"{' '.join(str(exc).split())[:200]}); the previous tables are unchanged") from None


def sources_extend(old: list | None, new: list) -> bool:
    """Whether the union ``new`` only adds events after those of ``old`` (so its seqs stand):
    the same producers, in the same order, all but the last at the same head."""
    if old is None or len(old) != len(new) or not new:
        return False
    if any(list(a) != list(b) for a, b in zip(old[:-1], new[:-1])):
        return False
    return old[-1][0] == new[-1][0] and new[-1][1] >= old[-1][1]


def tables_intact(target: Path, tables: tuple[str, ...], cp: dict) -> bool:
    """Whether each table file still has the bytes its checkpoint recorded: sizes
    always; the sha256 when the file's mtime changed since (or none was recorded,
    by an older engine: then its Parquet footer at least must read)."""
    files = cp.get("files") or {}
    base = target / cp["gen"] if cp.get("gen") else target
    for path in (f for t in tables for f in committed.table_files(target, cp, t)):
        key = path.relative_to(base).as_posix().removesuffix(".parquet")
        try:
            st = os.stat(path)
            if key not in files:
                pq.read_metadata(path)
                continue
            size, mtime_ns, digest = files[key]
            if st.st_size != size:
                return False
            if st.st_mtime_ns != mtime_ns:
                with open(path, "rb") as fh:
                    if hashlib.file_digest(fh, "sha256").hexdigest() != digest:
                        return False
        except (OSError, ValueError, pa.ArrowException):
            return False
    return True


def read_files(files: list) -> pl.DataFrame:
    """One table from its files (paths or open handles), parts concatenated in order."""
    frames = [pl.read_parquet(f) for f in files]
    return frames[0] if len(frames) == 1 else pl.concat(frames, rechunk=False)


def _write_csv(df: pl.DataFrame, path: Path) -> None:
    csv_ready(df).write_csv(path)


def csv_ready(df: pl.DataFrame) -> pl.DataFrame:
    """CSV has no nested values: lists and structs become JSON text, bytes become hex."""
    nested = [c for c, t in df.schema.items() if isinstance(t, (pl.List, pl.Struct, pl.Array))]
    binary = [c for c, t in df.schema.items() if t == pl.Binary]
    return df.with_columns(
        *[pl.struct(pl.col(c).alias("v")).struct.json_encode().str.replace(r'^\{"v":(.*)\}$', "$1").alias(c)
          for c in nested],
        *[pl.col(c).bin.encode("hex") for c in binary],
    )


def read_tables(tables_dir: Path, names: list[str]) -> tuple[dict[str, pl.DataFrame], Committed]:
    """Tables as committed: every table of a projection from one checkpoint, even
    while a rebuild commits a newer one (see :mod:`chronicle.committed`). Each is
    read from an open file handle: Polars opens a path more than once (metadata,
    then pages), and a handle always sees one whole file."""
    view, handles = committed.open_tables(tables_dir, names)
    try:
        return {t: read_files(opened) for t, opened in handles.items()}, view
    finally:
        for opened in handles.values():
            for fh in opened:
                fh.close()
