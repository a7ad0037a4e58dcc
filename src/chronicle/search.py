"""Full-text search over sessions, commits and documents: SQLite FTS5.

The ``search`` projection (``projections/search.py``) writes ``search_units``,
one row per message block; this module keeps a SQLite FTS5 index of that
table in ``data/tables/search.sqlite``. Why FTS5: it ships inside Python's
``sqlite3`` (no new dependency, nothing to compile), it has the query language
people expect (phrases, AND/OR/NOT, prefix*), BM25 ranking and snippets, and
filters are plain SQL on the same connection. The index is never precious: it
is brought up to date from the table on every search (rows added since it was
built are inserted; a table that lost rows is indexed again from scratch), and
deleting it costs one build.

This module is light on purpose (sqlite3 and msgspec): a warm search answers
without loading Polars or Arrow.
"""

from __future__ import annotations

import os
import re
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

INDEX_NAME = "search.sqlite"
TABLE = "search_units"
#: What the index holds besides the text, in search_units' names.
META_COLUMNS = ("seq", "block", "kind", "role", "time_us", "session_id", "agent_id", "project", "tool",
                "doc_id", "stage", "template", "model", "cohort")
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
    last_term_at = -1
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
            pos, expect_term, last_term_at = end + 1, False, start
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
            if expect_term and not (word == "NOT" and out == []):
                raise QueryError(query, start, f"a word or a phrase before {word}")
            if word == "NOT" and out == []:
                raise QueryError(query, start, "a word or a phrase to exclude from (NOT cannot come first)")
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
        pos, expect_term, last_term_at = m.end(), False, start
    if depth:
        raise QueryError(query, len(query), "a ')' to close the group")
    if expect_term:
        if not out:
            raise QueryError(query, 0, "something to search for")
        raise QueryError(query, len(query), f"a word or a phrase after {out[-1]}")
    return " ".join(out)


# -------------------------------------------------------------------- index

@dataclass(frozen=True)
class Hit:
    seq: int
    block: int
    kind: str
    role: str
    time_us: int | None
    session_id: str | None
    agent_id: str | None
    project: str | None
    tool: str | None
    doc_id: str | None
    stage: str | None
    template: str | None
    model: str | None
    cohort: str | None
    snippet: str
    rank: float


def connect(tables_dir: Path) -> sqlite3.Connection:
    db = sqlite3.connect(tables_dir / INDEX_NAME, timeout=30)
    db.execute("PRAGMA journal_mode=WAL")
    return db


def create(db: sqlite3.Connection) -> None:
    db.executescript(f"""
        CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value TEXT);
        CREATE TABLE IF NOT EXISTS meta (id INTEGER PRIMARY KEY, {", ".join(META_COLUMNS)});
        CREATE INDEX IF NOT EXISTS meta_session ON meta (session_id, seq);
        CREATE INDEX IF NOT EXISTS meta_doc ON meta (doc_id, seq);
        CREATE VIRTUAL TABLE IF NOT EXISTS units USING fts5(text, tokenize = 'unicode61 remove_diacritics 2');
    """)


def state(db: sqlite3.Connection) -> dict[str, str]:
    try:
        return dict(db.execute("SELECT key, value FROM state"))
    except sqlite3.OperationalError:
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
    order = "rank" if sort == "rank" else "m.time_us DESC, m.seq DESC"
    sql = (f"SELECT {', '.join('m.' + c for c in META_COLUMNS)}, "
           f"snippet(units, 0, ?, ?, '…', 16), bm25(units) AS rank "
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


def remove(tables_dir: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        try:
            os.unlink(tables_dir / (INDEX_NAME + suffix))
        except FileNotFoundError:
            pass
