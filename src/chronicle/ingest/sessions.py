"""``chronicle ingest sessions``: coding-agent transcripts into the log, incrementally.

Generic over sources (``ingest.sources``): a file's kind names the source
whose ``line_table`` turns its bytes into line events; everything here
(cursors, generations, partial lines, tail hashes, commits) is the same for
every agent.

Per file, the log holds a cursor: the latest ``source.seen`` (a generation
starts at byte 0) or ``source.appended`` (ingested up to ``end``). A pass
re-reads the 4 KiB before the cursor and compares ``tail_sha256``: a file that
shrank or whose bytes changed is recorded as ``source.rewritten`` and read
again from byte 0 as a new generation; earlier events stay.

Only whole lines are ingested. A trailing partial line waits for its newline,
unless the file has been quiet for ``quiet_seconds`` and the bytes are a
complete JSON object (a transcript whose last line has no newline).

Each chunk's lines and its ``source.appended`` cursor are committed in one
atomic append (chunks of small files share one), and passes hold
``ingest.lock``, so a line is never recorded twice. Ids are still checked
against the log (they are unique across every write path): an id this
ingester derives that another writer took first is given a suffix (``~2``).
"""

from __future__ import annotations

import contextvars
import gc
import hashlib
import os
import stat
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
import polars as pl
import pyarrow as pa

from chronicle.events import Event, SessionMeta, SourceAppended, SourceError, SourceRewritten, SourceSeen, event_class
from chronicle.ingest import event_ids
from chronicle.ingest.sources import META_KINDS, SourceFile, discover, source_of
from chronicle.store import ConflictingEvent, EventLog, Snapshot, StoreError, codec
from chronicle.store.bulk import PreparedTables, prepare_tables
from chronicle.store.fsutil import locked
from chronicle.secrets.scan import TARGETS, CommitScanner

TAIL = 4096
#: Bytes read (and committed) at a time: larger chunks mean fewer commits, each with
#: its fsyncs; at most three are held at once (one parsed, two in the pipeline).
CHUNK = 32 * 1024 * 1024
#: A chunk below both limits goes through the WAL; a larger one straight to a segment.
BULK_LINES = 2000
BULK_BYTES = 1 << 20
#: Seal at the end of a pass once the WAL holds this much, so snapshots stay cheap.
SEAL_WAL_BYTES = 16 << 20


@dataclass(frozen=True, slots=True)
class Cursor:
    generation: int
    end: int
    end_line: int
    tail_sha256: str
    #: When the cursor was recorded (µs): a file modified after it without growing is checked whole.
    recorded_at_us: int = 0
    #: The file's kind as ``source.seen`` recorded it (which source reads it).
    kind: str = ""


@dataclass
class Summary:
    files: int = 0
    new_files: int = 0
    changed_files: int = 0
    rewritten: int = 0
    lines: int = 0
    bytes: int = 0
    errors: int = 0
    #: Found in what this pass recorded (with ``secrets_dir``).
    secrets_found: int = 0
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)

    def line(self) -> str:
        rate = self.bytes / 1e6 / self.seconds if self.seconds else 0.0
        return (f"{self.files} files ({self.new_files} new, {self.changed_files} changed, {self.rewritten} rewritten): "
                f"{self.lines:,} lines, {self.bytes / 1e6:,.1f} MB in {self.seconds:.1f}s ({rate:,.1f} MB/s); "
                f"{self.errors} problems recorded")


@contextmanager
def _cyclic_gc_paused() -> Iterator[None]:
    """A pass allocates millions of short-lived, acyclic tuples and Structs; the
    cyclic collector walking them took about 4% of ingest time. Refcounting
    still frees them; cycles made meanwhile wait for the pass to end."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


_EMPTY_SHA = _sha(b"")


def cursors(snap: Snapshot) -> dict[str, Cursor]:
    """The latest cursor of every source path in the log."""
    seen = snap.frame("source.seen", ["seq", "recorded_at", "path", "generation", "kind"]).with_columns(
        end=pl.lit(0, pl.Int64), end_line=pl.lit(0, pl.Int64), tail_sha256=pl.lit(_EMPTY_SHA))
    appended = snap.frame("source.appended",
                          ["seq", "recorded_at", "path", "generation", "end", "end_line", "tail_sha256"])
    latest = (pl.concat([seen, appended], how="diagonal_relaxed")
              .group_by("path").agg(pl.all().exclude("kind").sort_by("seq").last(),
                                    pl.col("kind").sort_by("seq").drop_nulls().last())
              .with_columns(pl.col("recorded_at").dt.epoch("us")).collect())
    return {p: Cursor(g, e, n, t, r, k or "") for p, g, e, n, t, r, k in
            latest.select("path", "generation", "end", "end_line", "tail_sha256", "recorded_at", "kind").iter_rows()}


def known_kinds(known: dict[str, Cursor]) -> dict[str, str]:
    """path -> recorded kind, for ``discover``: a file with lines ingested keeps its kind
    (its first line is not read again); one without is classified again (see _lines)."""
    return {p: c.kind for p, c in known.items() if c.kind and c.end > 0}


def chunk_hashes(snap: Snapshot, path: str, generation: int) -> list[tuple[int, int, str]]:
    """(start, end, sha256) of every ingested chunk of one generation of a file, in order."""
    return (snap.frame("source.appended", ["path", "generation", "start", "end", "sha256"])
            .filter((pl.col("path") == path) & (pl.col("generation") == generation))
            .select("start", "end", "sha256").sort("start").collect().rows())


def open_regular(path: Path):
    """``path`` opened for reading, never blocking: a FIFO or device named like a
    transcript is refused (NotARegularFile) instead of hanging the pass."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise NotARegularFile(path)
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


class NotARegularFile(OSError):
    def __init__(self, path: Path):
        super().__init__("not a regular file (a FIFO, socket or device): skipped")
        self.path = path


def bytes_behind(files: list[SourceFile], known: dict[str, Cursor]) -> int:
    """Bytes of transcript files not yet ingested (a vanished file counts 0)."""
    behind = 0
    for f in files:
        if f.kind in META_KINDS:
            continue
        try:
            size = f.path.stat().st_size
        except OSError:
            continue
        cur = known.get(str(f.path))
        behind += max(0, size - (cur.end if cur else 0))
    return behind


def meta_versions(snap: Snapshot) -> dict[str, tuple[int, str]]:
    """path -> (number of recorded versions, sha256 of the latest) for sidecar files."""
    frame = snap.frame("session.meta", ["seq", "path", "sha256"])
    latest = frame.group_by("path").agg(pl.len().alias("n"), pl.col("sha256").sort_by("seq").last()).collect()
    return {p: (n, s) for p, n, s in latest.iter_rows()}


class _Committer:
    """Commits everything a pass records, in order, on two background threads.

    Line chunks (each with its cursor) and the pass's other events (files
    seen, rewritten, sidecars, problems) are gathered until ``chunk_bytes``
    and committed together in one atomic append. A batch is hashed
    (``prepare_tables``) on one thread while the batch before it is written
    and committed on another; hashing, Parquet writing and fsync release the
    GIL, so the next file is read and parsed meanwhile. At most ``DEPTH``
    batches are in flight, which bounds memory. A failed commit fails every
    later one (a cursor must never pass lines that were not committed); the
    error surfaces on the next call. The commit thread has an EventLog of its
    own (instances are not shared across threads).
    """

    DEPTH = 2

    def __init__(self, log_path: Path, chunk_bytes: int, scanner: CommitScanner | None = None):
        self.log = EventLog(log_path)
        self.scanner = scanner
        self.chunk_bytes = chunk_bytes
        self.hasher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="chronicle-hash")
        self.writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="chronicle-commit")
        self.inflight: deque[Future] = deque()
        self.items: list[_Lines | Event] = []  # line tables and events, in recording order
        self.pending_lines = 0
        self.pending_bytes = 0

    def add(self, lines: _Lines, cursor: SourceAppended, size: int) -> None:
        self.items += (lines, cursor)
        self.pending_lines += lines.table.num_rows
        self.record([], size)

    def record(self, events: list[Event], size: int = 0) -> None:
        self.items += events
        self.pending_bytes += size
        if self.pending_bytes >= self.chunk_bytes:
            self.flush()

    def flush(self) -> None:
        if not self.items:
            return
        items = self.items
        small = self.pending_lines < BULK_LINES and self.pending_bytes < BULK_BYTES
        self.items, self.pending_lines, self.pending_bytes = [], 0, 0
        while len(self.inflight) >= self.DEPTH:
            self.inflight.popleft().result()
        prepared = self.hasher.submit(self._prepare, items, small, self.scanner)
        previous = self.inflight[-1] if self.inflight else None
        # in the caller's context: a notice that the log's lock is held goes where its stderr goes
        self.inflight.append(self.writer.submit(contextvars.copy_context().run, self._commit, prepared, previous))

    @staticmethod
    def _prepare(items: list[_Lines | Event], small: bool,
                 scanner: CommitScanner | None) -> tuple[PreparedTables | list[Event], list]:
        """The batch and, with a scanner, what it flagged for secrets (see ``_batch``)."""
        flags: list = []
        if scanner is not None:  # one look per event type over the whole batch (a look has a fixed cost)
            tables: dict[str, list[pa.Table]] = {}
            for item in items:
                if isinstance(item, _Lines):
                    tables.setdefault(item.event, []).append(item.table)
                elif item.type_name() in TARGETS:
                    flags += scanner.flag_event(item)
            for event, parts in tables.items():
                flags += scanner.flag(event, pa.concat_tables(parts))
        return _Committer._batch(items, small), flags

    @staticmethod
    def _batch(items: list[_Lines | Event], small: bool) -> PreparedTables | list[Event]:
        """A small batch as events for the WAL, in order; a large one as tables for
        a segment: other events first (so a file's ``source.seen`` precedes its
        lines), then the lines, then their cursors."""
        if small:
            events: list[Event] = []
            for item in items:
                if isinstance(item, _Lines):
                    cls = event_class(item.event)
                    events += (cls(**row) for row in item.table.to_pylist())
                else:
                    events.append(item)
            return events
        by_type: dict[str, list[Event]] = {}
        lines: dict[str, list[pa.Table]] = {}
        for item in items:
            if isinstance(item, _Lines):
                lines.setdefault(item.event, []).append(item.table)
            else:
                by_type.setdefault(item.type_name(), []).append(item)
        cursors = by_type.pop(SourceAppended.type_name(), [])
        tables = {name: codec.events_to_table(events) for name, events in by_type.items()}
        if cursors:  # each cursor came with its lines
            tables.update((name, pa.concat_tables(parts)) for name, parts in lines.items())
            tables[SourceAppended.type_name()] = codec.events_to_table(cursors)
        return prepare_tables(tables)

    def _commit(self, prepared: Future, previous: Future | None) -> None:
        if previous is not None:
            previous.result()  # raises if the batch before this one failed
        batch, flags = prepared.result()
        taken = ""
        for _ in range(100):
            try:
                acks = self.log.append(batch) if isinstance(batch, list) else self.log.append_prepared(batch)
                if self.scanner is not None:
                    self.scanner.committed(flags, acks)
                return
            except ConflictingEvent as exc:  # another writer's event holds an id derived here
                taken = exc.event_id
                batch = _renamed(batch, taken)
        raise StoreError(f"ingest: event ids keep colliding with other writers' events (last: {taken})")

    def wait(self) -> None:
        while self.inflight:
            self.inflight.popleft().result()

    def close(self) -> None:
        try:
            self.flush()
            self.wait()
            if self.scanner is not None:
                self.secrets_found = self.scanner.record(self.log)
            else:
                self.secrets_found = 0
        finally:
            self.hasher.shutdown(wait=True)
            self.writer.shutdown(wait=True)
            self.log.close()


@dataclass(frozen=True, slots=True)
class _Lines:
    """One chunk's line events as a table, and their type's name."""

    event: str
    table: pa.Table


def _renamed(batch: PreparedTables | list[Event], taken: str) -> PreparedTables | list[Event]:
    """``batch`` with the event id ``taken`` given the next free suffix."""
    base, _, n = taken.partition("~")
    fresh = f"{base}~{int(n) + 1 if n.isdigit() else 2}"
    if isinstance(batch, list):
        return [msgspec.structs.replace(ev, event_id=fresh) if ev.event_id == taken else ev for ev in batch]
    tables = {}
    for part in batch.parts:
        ids = part.content.column("event_id")
        import pyarrow.compute as pc  # only on a collision: not at import, where it costs a tenth of a second

        renamed = pc.if_else(pc.equal(ids, taken), fresh, ids)
        content = part.content.set_column(part.content.schema.get_field_index("event_id"), "event_id", renamed)
        tables[part.cls.type_name()] = content.drop_columns(["type", "v"])
    return prepare_tables(tables)


class SessionIngester:
    def __init__(self, log: EventLog, lock_path: Path, *, quiet_seconds: float = 10.0, chunk_bytes: int = CHUNK,
                 on_bytes: Callable[[int, str], None] | None = None, secrets_dir: Path | None = None,
                 on_behind: Callable[[int], None] | None = None):
        """``secrets_dir``: the workspace's data folder, to scan each commit for secrets as
        it is made (see ``secrets.scan.CommitScanner``); without it, a later scan reads them.
        ``on_behind`` is told how many bytes the files hold beyond their cursors (a progress
        bar's total) before any is read; ``on_bytes`` each time some are."""
        self.log = log
        self.secrets_dir = secrets_dir
        self.lock_path = lock_path
        self.quiet_seconds = quiet_seconds
        self.chunk_bytes = chunk_bytes
        self.on_bytes = on_bytes or (lambda n, name: None)
        self.on_behind = on_behind
        self._committer: _Committer | None = None
        self._known_errors: set[str] = set()
        self._checked_in_place: dict[str, int] = {}  # path -> mtime (ns) found unchanged

    def run(self, paths: list[Path],
            files: list[SourceFile] | Callable[[dict[str, str]], list[SourceFile]] | None = None) -> Summary:
        """Ingest ``files`` (default: every file under ``paths``); a callable chooses them under
        the ingest lock, given the kind the log recorded for each path (``known_kinds``)."""
        started = time.monotonic()
        summary = Summary()
        with locked(self.lock_path), _cyclic_gc_paused():
            snap = self.log.snapshot()
            known = cursors(snap)
            if files is None:
                files = discover(paths, known_kinds(known))
            elif callable(files):
                files = files(known_kinds(known))
            summary.files = len(files)
            if self.on_behind is not None:
                self.on_behind(bytes_behind(files, known))
            metas = meta_versions(snap)
            self._known_errors = set(snap.frame("source.error", ["event_id"]).collect()["event_id"].to_list())
            scanner = CommitScanner(self.secrets_dir) if self.secrets_dir is not None else None
            self._committer = _Committer(self.log.path, self.chunk_bytes, scanner)
            try:
                for f in files:
                    try:
                        if f.kind in META_KINDS:
                            self._meta(f, known, metas, summary)
                        else:
                            self._lines(f, known.get(str(f.path)), summary)
                    except NotARegularFile as exc:
                        self._problem(f, str(exc), summary)
                    except OSError as exc:
                        self._problem(f, f"cannot read: {exc.strerror or exc}", summary)
            finally:
                committer, self._committer = self._committer, None
                committer.close()
            summary.secrets_found = committer.secrets_found
            if self.log.wal_bytes() >= SEAL_WAL_BYTES:
                self.log.seal()
        summary.seconds = time.monotonic() - started
        return summary

    # ------------------------------------------------------------------ helpers

    def _record(self, events: list[Event], size: int = 0) -> None:
        assert self._committer is not None
        self._committer.record(events, size)

    def _problem(self, f: SourceFile, message: str, summary: Summary) -> None:
        """Record a problem with a file as ``source.error``, once per (file, message)."""
        path = str(f.path)
        eid = event_ids.error_id(path, _sha(message.encode()))
        if eid in self._known_errors:
            return
        self._record([SourceError(stream=f"source:{path}", event_id=eid, path=path, error=message)])
        self._known_errors.add(eid)
        summary.errors += 1
        summary.problems.append(f"{path}: {message}")

    def _seen(self, f: SourceFile, size: int, generation: int) -> SourceSeen:
        path = str(f.path)
        return SourceSeen(stream=f"source:{path}", event_id=event_ids.seen_id(path, generation),
                          path=path, root=str(f.root), rel_path=f.rel_path, kind=f.kind, file_size=size,
                          generation=generation)

    # ------------------------------------------------------------------ sidecars

    def _meta(self, f: SourceFile, known: dict[str, Cursor], metas: dict[str, tuple[int, str]],
              summary: Summary) -> None:
        path = str(f.path)
        with open_regular(f.path) as fh:
            raw = fh.read()
        sha = _sha(raw)
        n, last = metas.get(path, (0, ""))
        if sha == last:
            return
        events: list[Event] = []
        if path not in known:
            events.append(self._seen(f, len(raw), 0))
            summary.new_files += 1
        else:
            summary.changed_files += 1
        events.append(SessionMeta(stream=f"source:{path}", event_id=event_ids.meta_id(path, n),
                                  path=path, kind=f.kind, sha256=sha, raw=raw))
        self._record(events, len(raw))
        summary.bytes += len(raw)
        self.on_bytes(len(raw), f.path.name)

    # ------------------------------------------------------------------ transcripts

    def _lines(self, f: SourceFile, cur: Cursor | None, summary: Summary) -> None:
        path = str(f.path)
        if cur is not None and cur.kind in ("", f.kind):
            try:
                st = os.stat(path)
            except OSError:
                st = None  # opening it reports the problem
            if (st is not None and stat.S_ISREG(st.st_mode) and st.st_size == cur.end
                    and st.st_mtime_ns // 1000 <= cur.recorded_at_us):
                # Not modified since its cursor was recorded, and no longer: nothing to read or check
                # (a same-length edit before the cursor would change the mtime: see _changed_in_place).
                return
        with open_regular(f.path) as fh:
            st = os.fstat(fh.fileno())
            size = st.st_size
            if cur is None:
                self._record([self._seen(f, size, 0)])
                cur = Cursor(0, 0, 0, _EMPTY_SHA)
                summary.new_files += 1
                if size == 0:
                    self._problem(f, "empty file (0 bytes)", summary)
            else:
                reason = self._rewrite_reason(fh, cur, size)
                if reason is None and cur.kind and cur.kind != f.kind:
                    reason = f"its first record shows a {f.kind} file (recorded as {cur.kind} before any line was)"
                if reason is None and size == cur.end and st.st_mtime_ns // 1000 > cur.recorded_at_us:
                    reason = self._changed_in_place(fh, path, cur)
                if reason:
                    gen = cur.generation + 1
                    self._record([
                        SourceRewritten(stream=f"source:{path}",
                                        event_id=event_ids.rewritten_id(path, gen),
                                        path=path, old_generation=cur.generation, new_generation=gen, reason=reason),
                        self._seen(f, size, gen),
                    ])
                    cur = Cursor(gen, 0, 0, _EMPTY_SHA)
                    summary.rewritten += 1
                elif size > cur.end:
                    summary.changed_files += 1
            if size <= cur.end:
                return
            quiet = time.time() - st.st_mtime >= self.quiet_seconds
            self._read_from(fh, f, cur, quiet, summary)

    @staticmethod
    def _rewrite_reason(fh, cur: Cursor, size: int) -> str | None:
        if size < cur.end:
            return f"file shrank to {size:,} bytes; {cur.end:,} were ingested"
        start = max(0, cur.end - TAIL)
        fh.seek(start)
        if _sha(fh.read(cur.end - start)) != cur.tail_sha256:
            return f"bytes before offset {cur.end:,} changed"
        return None

    def _changed_in_place(self, fh, path: str, cur: Cursor) -> str | None:
        """A file modified since its cursor without growing: an edit of the same
        length changes no size and may miss the tail, so every ingested chunk is
        hashed again (once per modification in a process)."""
        st = os.fstat(fh.fileno())
        if self._checked_in_place.get(path) == st.st_mtime_ns:
            return None
        for start, end, sha in chunk_hashes(self.log.snapshot(), path, cur.generation):
            fh.seek(start)
            if _sha(fh.read(end - start)) != sha:
                return f"bytes {start:,}..{end:,} changed in place (same size)"
        self._checked_in_place[path] = st.st_mtime_ns
        return None

    def _read_from(self, fh, f: SourceFile, cur: Cursor, quiet: bool, summary: Summary) -> None:
        start = max(0, cur.end - TAIL)
        fh.seek(start)
        tail = fh.read(cur.end - start)
        pos, line_no, pending = cur.end, cur.end_line + 1, b""
        while True:
            block = fh.read(self.chunk_bytes)
            if not block:
                break
            data = pending + block if pending else block
            cut = data.rfind(b"\n") + 1
            if cut == 0:
                pending = data  # one line longer than a chunk: keep reading
                continue
            complete, pending = (data, b"") if cut == len(data) else (data[:cut], data[cut:])
            pos, line_no, tail = self._commit(f, cur.generation, pos, line_no, complete, tail, summary)
        if pending and quiet and self._is_record(pending):
            self._commit(f, cur.generation, pos, line_no, pending, tail, summary)

    @staticmethod
    def _is_record(data: bytes) -> bool:
        try:
            return isinstance(msgspec.json.decode(data), dict)
        except msgspec.DecodeError:
            return False

    def _commit(self, f: SourceFile, generation: int, pos: int, line_no: int, data: bytes, tail: bytes,
                summary: Summary) -> tuple[int, int, bytes]:
        path = str(f.path)
        source = source_of(f.kind)
        lines = source.line_table(path, generation, pos, line_no, data)
        n = lines.num_rows
        end = pos + len(data)
        tail = (tail + data[-TAIL:])[-TAIL:]
        cursor = SourceAppended(stream=f"source:{path}",
                                event_id=event_ids.appended_id(path, generation, end),
                                path=path, generation=generation, start=pos, end=end, end_line=line_no + n - 1,
                                sha256=_sha(data), tail_sha256=_sha(tail))
        assert self._committer is not None
        self._committer.add(_Lines(source.line_event.type_name(), lines), cursor, len(data))
        errors = lines.column("error")
        if errors.null_count < n:
            for row in lines.filter(errors.is_valid()).select(["line_no", "error"]).to_pylist():
                summary.errors += 1
                summary.problems.append(f"{path}:{row['line_no']}: {row['error']}")
        summary.lines += n
        summary.bytes += len(data)
        self.on_bytes(len(data), f.path.name)
        return end, line_no + n, tail
