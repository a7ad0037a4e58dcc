"""Full-text search over sessions, commits and documents: SQLite FTS5.

The index is a projection kept in SQLite (``data/tables/search.sqlite``) rather
than Parquet: ``projections/_search_units.py`` turns events into units (one
per message block), and :func:`catch_up` applies the events after the index's
checkpoint: their units are inserted, units of an earlier recording of the
same (session, uuid) deleted, and a rewritten transcript indexes everything
again. Its cost follows the new events, not the log. The checkpoint (seq and
code version) commits in the same SQLite transaction as the rows, so a crash
leaves the index as it was. Never precious: delete it and the next search
builds it again.

Why FTS5: it ships inside Python's ``sqlite3`` (no new dependency, nothing to
compile), it has the query language people expect (phrases, AND/OR/NOT,
prefix*), BM25 ranking and snippets, and filters are plain SQL on the same
connection.

The query side is light on purpose (sqlite3 only): a warm search answers
without loading Polars or Arrow; :func:`catch_up` loads them.
"""

from __future__ import annotations

import os
import re
import sqlite3
from collections.abc import Iterator
from typing import NamedTuple
from pathlib import Path

INDEX_NAME = "search.sqlite"
TABLE = "search_units"
#: What the index holds besides the text, in search_units' names.
META_COLUMNS = ("seq", "block", "kind", "role", "time_us", "session_id", "uuid", "agent_id", "project", "tool",
                "tool_use_id", "tool_part", "doc_id", "stage", "template", "model", "cohort")
#: The module that makes units: its code version is the index's.
UNITS_MODULE = "_search_units"
#: Filters a search takes, each an equality on one column.
FILTERS = ("role", "project", "session_id", "agent_id", "tool", "stage", "template", "model", "cohort", "kind")


class QueryError(ValueError):
    """A query that does not parse; says where and what was expected."""

    def __init__(self, query: str, position: int, expected: str):
        pointer = f"{query}\n{' ' * position}^"
        super().__init__(f"query does not parse at position {position + 1}: expected {expected}\n{pointer}")
        self.position = position


# ------------------------------------------------------------------ queries

_TOKEN = re.compile(r'\s*(?:(?P<quote>")|(?P<open>\()|(?P<close>\))|(?P<word>[^\s"()]+))')
_OPERATORS = {"AND", "OR", "NOT"}
_BAREWORD = re.compile(r"^[\w]+$", re.UNICODE)


def compile_query(query: str) -> str:
    """The user's query as an FTS5 query: words, "phrases", AND/OR/NOT, (groups),
    prefix*. A word with punctuation (``sk-test``, ``cli.py``) becomes a phrase of
    its parts, as the index splits it. QueryError names the position otherwise."""
    out: list[str] = []
    pos, depth = 0, 0
    expect_term = True  # at the start, after an operator or "("
    while pos < len(query):
        m = _TOKEN.match(query, pos)
        if m is None or m.end() == pos:
            if query[pos:].strip() == "":
                break
            raise QueryError(query, pos, "a word, a phrase or an operator")
        start = m.start(m.lastgroup) if m.lastgroup else pos
        if m.group("quote"):
            end = query.find('"', m.end())
            if end == -1:
                raise QueryError(query, start, 'a closing " for the phrase')
            phrase = query[m.end():end]
            if not phrase.strip():
                raise QueryError(query, start, "words inside the quotes")
            if not expect_term:
                out.append("AND")
            out.append('"' + phrase.replace('"', '""') + '"')
            pos, expect_term = end + 1, False
            continue
        if m.group("open"):
            if not expect_term:
                out.append("AND")
            out.append("(")
            depth += 1
            pos, expect_term = m.end(), True
            continue
        if m.group("close"):
            if depth == 0:
                raise QueryError(query, start, "no ')' here: there is no '(' to close")
            if expect_term:
                raise QueryError(query, start, "a word or a phrase before ')'")
            out.append(")")
            depth -= 1
            pos = m.end()
            continue
        word = m.group("word")
        if word in _OPERATORS:
            if word == "NOT" and not out:
                raise QueryError(query, start, "a word or a phrase to exclude from (NOT cannot come first)")
            if expect_term:
                raise QueryError(query, start, f"a word or a phrase before {word}")
            out.append(word)
            pos, expect_term = m.end(), True
            continue
        if not expect_term:
            out.append("AND")
        prefix = word.endswith("*") and len(word) > 1
        core = word[:-1] if prefix else word
        if _BAREWORD.match(core):
            out.append(core + ("*" if prefix else ""))
        else:
            parts = [p for p in re.split(r"[^\w]+", core, flags=re.UNICODE) if p]
            if not parts:
                raise QueryError(query, start, "a word with letters or digits")
            out.append('"' + " ".join(parts) + '"' + ("*" if prefix else ""))
        pos, expect_term = m.end(), False
    if depth:
        raise QueryError(query, len(query), "a ')' to close the group")
    if expect_term:
        if not out:
            raise QueryError(query, 0, "something to search for")
        raise QueryError(query, len(query), f"a word or a phrase after {out[-1]}")
    return " ".join(out)


# -------------------------------------------------------------------- index

class Hit(NamedTuple):
    seq: int
    block: int
    kind: str
    role: str
    time_us: int | None
    session_id: str | None
    uuid: str | None
    agent_id: str | None
    project: str | None
    tool: str | None
    tool_use_id: str | None
    tool_part: str | None
    doc_id: str | None
    stage: str | None
    template: str | None
    model: str | None
    cohort: str | None
    snippet: str
    rank: float


def connect(tables_dir: Path) -> sqlite3.Connection:
    return sqlite3.connect(tables_dir / INDEX_NAME, timeout=30, isolation_level=None)


def create(db: sqlite3.Connection) -> None:
    db.executescript(f"""
        CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value TEXT);
        CREATE TABLE IF NOT EXISTS meta (id INTEGER PRIMARY KEY, {", ".join(META_COLUMNS)});
        CREATE INDEX IF NOT EXISTS meta_session ON meta (session_id, seq);
        CREATE INDEX IF NOT EXISTS meta_record ON meta (session_id, uuid);
        CREATE INDEX IF NOT EXISTS meta_doc ON meta (doc_id, seq);
        CREATE INDEX IF NOT EXISTS meta_tool ON meta (tool_use_id);
        CREATE VIRTUAL TABLE IF NOT EXISTS units USING fts5(text, tokenize = 'unicode61 remove_diacritics 2');
    """)


def state(db: sqlite3.Connection) -> dict[str, str]:
    """The index's checkpoint (seq, code); empty for a file that holds none. DatabaseError if not SQLite."""
    try:
        return dict(db.execute("SELECT key, value FROM state"))
    except sqlite3.OperationalError:  # no state table yet
        return {}


def search(db: sqlite3.Connection, fts_query: str, filters: dict[str, str], *, since_us: int | None = None,
           until_us: int | None = None, sort: str = "rank", limit: int = 20, offset: int = 0,
           marks: tuple[str, str] = ("[", "]")) -> list[Hit]:
    """Ranked (BM25) or newest-first hits of ``fts_query`` with equality filters."""
    where, params = ["units MATCH ?"], [fts_query]
    for column, value in filters.items():
        if column not in FILTERS:
            raise ValueError(f"unknown filter {column!r}")
        where.append(f"m.{column} = ?")
        params.append(value)
    if since_us is not None:
        where.append("m.time_us >= ?")
        params.append(since_us)
    if until_us is not None:
        where.append("m.time_us <= ?")
        params.append(until_us)
    # FTS5's own rank column (BM25) sorts about 30% faster than an ORDER BY on bm25() of each row
    order = "units.rank" if sort == "rank" else "m.time_us DESC, m.seq DESC"
    sql = (f"SELECT {', '.join('m.' + c for c in META_COLUMNS)}, "
           f"snippet(units, 0, ?, ?, '…', 16), units.rank "
           f"FROM units JOIN meta m ON m.id = units.rowid WHERE {' AND '.join(where)} "
           f"ORDER BY {order} LIMIT ? OFFSET ?")
    rows = db.execute(sql, [marks[0], marks[1], *params, limit, offset]).fetchall()
    return [Hit(*row) for row in rows]


def context(db: sqlite3.Connection, hit: Hit, n: int) -> list[tuple[int, str, str]]:
    """(seq, role, text) of the ``n`` units before and after a hit in its session or document."""
    key, value = ("session_id", hit.session_id) if hit.session_id else ("doc_id", hit.doc_id)
    if value is None or n <= 0:
        return []
    rows = db.execute(
        f"""SELECT * FROM (SELECT m.seq, m.block, m.role, u.text FROM meta m JOIN units u ON u.rowid = m.id
               WHERE m.{key} = ? AND (m.seq < ? OR (m.seq = ? AND m.block < ?)) ORDER BY m.seq DESC, m.block DESC LIMIT ?)
            UNION ALL
            SELECT * FROM (SELECT m.seq, m.block, m.role, u.text FROM meta m JOIN units u ON u.rowid = m.id
               WHERE m.{key} = ? AND (m.seq > ? OR (m.seq = ? AND m.block > ?)) ORDER BY m.seq, m.block LIMIT ?)""",
        [value, hit.seq, hit.seq, hit.block, n, value, hit.seq, hit.seq, hit.block, n]).fetchall()
    return [(seq, role, text) for seq, _, role, text in sorted(rows)]


def insert(db: sqlite3.Connection, rows: Iterator[tuple]) -> int:
    """Add (META_COLUMNS..., text) rows; returns how many."""
    n = 0
    meta_sql = f"INSERT INTO meta (id, {', '.join(META_COLUMNS)}) VALUES ({', '.join('?' * (len(META_COLUMNS) + 1))})"
    start = db.execute("SELECT COALESCE(MAX(id), 0) FROM meta").fetchone()[0]
    batch_meta, batch_text = [], []
    for row in rows:
        n += 1
        rowid = start + n
        batch_meta.append((rowid, *row[:-1]))
        batch_text.append((rowid, row[-1]))
        if len(batch_meta) >= 5000:
            db.executemany(meta_sql, batch_meta)
            db.executemany("INSERT INTO units (rowid, text) VALUES (?, ?)", batch_text)
            batch_meta, batch_text = [], []
    if batch_meta:
        db.executemany(meta_sql, batch_meta)
        db.executemany("INSERT INTO units (rowid, text) VALUES (?, ?)", batch_text)
    return n


def _forget(db: sqlite3.Connection, records: list[tuple[str, str]]) -> None:
    """Delete the units of these (session_id, uuid) records (a later recording replaces them)."""
    db.execute("CREATE TEMP TABLE IF NOT EXISTS gone (session_id TEXT, uuid TEXT)")
    db.execute("DELETE FROM gone")
    db.executemany("INSERT INTO gone VALUES (?, ?)", records)
    ids = "SELECT m.id FROM meta m JOIN gone g ON m.session_id = g.session_id AND m.uuid = g.uuid"
    db.execute(f"DELETE FROM units WHERE rowid IN ({ids})")
    db.execute(f"DELETE FROM meta WHERE id IN ({ids})")


def _name(db: sqlite3.Connection) -> None:
    """Name tool results by their call, and give responses and parses their prompt's document fields,
    wherever in the index the call or prompt is (it may have come in an earlier or later batch)."""
    db.execute("""UPDATE meta SET tool = (SELECT c.tool FROM meta c WHERE c.tool_use_id = meta.tool_use_id
                                          AND c.tool_part = 'call' ORDER BY c.seq, c.block LIMIT 1)
                  WHERE tool_part = 'result' AND tool IS NULL""")
    for column in ("stage", "template", "model", "cohort"):
        db.execute(f"""UPDATE meta SET {column} = (SELECT p.{column} FROM meta p WHERE p.doc_id = meta.doc_id
                                                   AND p.role = 'prompt' ORDER BY p.seq LIMIT 1)
                       WHERE role IN ('response', 'parsed') AND {column} IS NULL""")


def current(tables_dir: Path, head: int, redactions: int = 0) -> bool:
    """Whether the index holds the log up to ``head`` after ``redactions``, made by today's code
    (no Polars needed)."""
    from chronicle.projection_code import builtin_code_version

    try:
        with sqlite3.connect(f"file:{tables_dir / INDEX_NAME}?mode=ro", uri=True) as db:
            built = state(db)
    except sqlite3.Error:  # missing or damaged: not current
        return False
    return (built.get("seq") == str(head) and built.get("code") == builtin_code_version(UNITS_MODULE)
            and int(built.get("redactions", 0)) == redactions)


def catch_up(tables_dir: Path, snap) -> str:  # snap: chronicle.store.Snapshot
    """Bring the index up to ``snap.head``; returns "current", "updated" or "built"."""
    import polars as pl

    from chronicle.projection_code import builtin_code_version
    from chronicle.projections import _search_units as su
    from chronicle.projections._claude import rewritten
    from chronicle.store.fsutil import locked

    code = builtin_code_version(UNITS_MODULE)
    tables_dir.mkdir(parents=True, exist_ok=True)
    with locked(tables_dir / ".search.lock"):
        db = connect(tables_dir)
        try:
            built = state(db)
        except sqlite3.DatabaseError:  # not an index any more (damaged): it is made again
            built = {}
        # another schema, or none, or built before a redaction: from an empty file (SQLite's free
        # pages would keep text a redaction took out)
        if built.get("code") != code or int(built.get("redactions", 0)) != len(snap.redactions):
            db.close()
            remove(tables_dir)
            db = connect(tables_dir)
            built = {}
        try:
            create(db)
            last = int(built.get("seq", 0))
            if last == snap.head:
                return "current"
            if last > snap.head:
                last = 0  # an index of more than this log holds: made again from it
            frames = {t: snap.frame(t) for t in su.INPUTS}
            delta = {t: f.filter(pl.col("seq") > last) for t, f in frames.items()} if last else frames
            if last and rewritten(delta["session.line"]):
                last, delta = 0, frames
            found, records = su.units(delta)
            db.execute("BEGIN")
            if last == 0:
                db.execute("DELETE FROM meta")
                db.execute("DELETE FROM units")
            else:
                _forget(db, records.drop_nulls().rows())
            rows = found.with_columns(pl.col("time").dt.epoch("us").alias("time_us"))
            insert(db, rows.select(*META_COLUMNS, "text").iter_rows())
            _name(db)
            db.executemany("INSERT OR REPLACE INTO state VALUES (?, ?)",
                           [("seq", str(snap.head)), ("code", code), ("redactions", str(len(snap.redactions)))])
            db.execute("COMMIT")
            return "built" if last == 0 else "updated"
        finally:
            db.close()


def dump(tables_dir: Path) -> list[tuple]:
    """Every unit in the index, in (seq, block) order, without its row id: two indexes of one log compare equal."""
    with sqlite3.connect(f"file:{tables_dir / INDEX_NAME}?mode=ro", uri=True) as db:
        return db.execute(f"SELECT {', '.join('m.' + c for c in META_COLUMNS)}, u.text FROM meta m "
                          "JOIN units u ON u.rowid = m.id ORDER BY m.seq, m.block").fetchall()


def remove(tables_dir: Path) -> None:
    for suffix in ("", "-journal"):
        try:
            os.unlink(tables_dir / (INDEX_NAME + suffix))
        except FileNotFoundError:
            pass
