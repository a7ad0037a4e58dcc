"""``chronicle secrets redact``: a finding's value taken out of the log itself.

A finding names where a value lies and its salted hash, never the value. A
redaction finds the value again (the rule run over the field the finding
names, the span whose hash is the finding's), then every recorded event
holding it anywhere (any text or bytes field, as written or JSON-escaped, in
any event type: the line it was found in, the response that echoed it, the
parse that copied it), and has the store rewrite them with
``[redacted:RULE]`` in its place (``store.redaction``: the hashes stay, so the
log still verifies). A value inside a JSON line is cut where its JSON string
ends, so the line stays the same JSON with one string changed; a line that
would not parse afterwards is refused before anything is written.

The tables, the search index and the documents hold what was read from the
log: a projection built before a redaction is built again from the redacted
log on the next read (the engine compares the redactions it was built after),
and ``redact`` rebuilds them itself before it returns.
"""

from __future__ import annotations

import getpass
import json
from dataclasses import dataclass, field

import polars as pl

from chronicle.errors import UsageError
from chronicle.secrets.scan import find, value_hash
from chronicle.store import EventLog, Snapshot
from chronicle.store.manifest import Redaction
from chronicle.store.redaction import FIXED, Change

#: Fields that hold whole JSON lines (a value is cut where its JSON string ends).
JSON_LINES = {("session.line", "raw"), ("codex.line", "raw"), ("session.meta", "raw")}


def marker(rule: str) -> bytes:
    return f"[redacted:{rule}]".encode()


@dataclass
class Plan:
    #: finding id -> (rule, the bytes to take out: the value as found and, for one inside
    #: base64, its base64 text too) for the findings whose value is still in the log
    values: dict[str, tuple[str, list[bytes]]] = field(default_factory=dict)
    #: findings whose value is gone already (an earlier redaction took it)
    gone: list[str] = field(default_factory=list)
    changes: list[Change] = field(default_factory=list)


def _string_end(data: bytes, start: int, end: int) -> int:
    """``end``, or less: where the JSON string that ``start`` lies in ends (an unescaped
    quote), never in the middle of an escape."""
    i = start
    while i < end:
        if data[i] == 0x5C:  # backslash: it and the byte it escapes stay together
            if i + 1 >= end:
                return i
            i += 2
            continue
        if data[i] == 0x22:
            return i
        i += 1
    return end


def locate(snap: Snapshot, key: bytes, found: pl.DataFrame) -> Plan:
    """The value of each finding (rows of ``secret.found``), found again in its event: the
    rules run over the field, and the hit of the finding's rule whose value has its hash."""
    plan = Plan()
    for row in found.iter_rows(named=True):
        type_name, fld = row["target_type"], row["field"]
        cell = (snap.frame(type_name, ["seq", fld]).filter(pl.col("seq") == row["target_seq"]).collect()[fld])
        data = cell[0] if len(cell) else None
        if isinstance(data, str):
            data = data.encode()
        hit = None if data is None else next(
            (h for h in find(data) if h.rule == row["rule"] and value_hash(key, h.value) == row["value_hash"]), None)
        if hit is None:
            plan.gone.append(row["finding_id"])
            continue
        end = _string_end(data, hit.start, hit.end) if (type_name, fld) in JSON_LINES else hit.end
        taken = [data[hit.start:end]]
        if hit.value != data[hit.start:hit.end]:  # inside base64: the decoded value wherever it lies too
            taken.append(hit.value)
        plan.values[row["finding_id"]] = (row["rule"], taken)
    return plan


def _variants(value: bytes) -> list[bytes]:
    """The value as found, and as it reads on the other side of JSON escaping."""
    out = [value]
    try:
        text = value.decode()
    except UnicodeDecodeError:
        return out
    if "\\" in text:
        try:
            out.append(json.loads(f'"{text}"').encode())
        except ValueError:
            pass
    escaped = json.dumps(text, ensure_ascii=False)[1:-1].encode()
    out.append(escaped)
    return sorted(set(v for v in out if v), key=len, reverse=True)  # the longest first: one never eats another


def plan_changes(snap: Snapshot, plan: Plan) -> None:
    """Every event holding one of the plan's values, with each occurrence replaced."""
    pairs = [(v, marker(rule)) for rule, taken in plan.values.values() for value in taken for v in _variants(value)]
    pairs.sort(key=lambda p: len(p[0]), reverse=True)
    if not pairs:
        return
    needles = [v for v, _ in pairs]
    for type_name in snap.types():
        frame = snap.frame(type_name)
        schema = frame.collect_schema()
        text = [n for n, t in schema.items() if n not in FIXED and t in (pl.String, pl.Binary)]
        if not text:
            continue
        hits = []
        for name in text:
            dtype = schema[name]
            for v in needles:
                hits.append(pl.col(name).bin.contains(v) if dtype == pl.Binary
                            else pl.col(name).str.contains(v.decode("utf-8", "replace"), literal=True))
        rows = frame.filter(pl.any_horizontal(hits).fill_null(False)).select("seq", *text).collect()
        for row in rows.iter_rows(named=True):
            values = {}
            for name in text:
                cell = row[name]
                if cell is None:
                    continue
                data = cell if isinstance(cell, bytes) else cell.encode()
                new = data
                for v, mark in pairs:
                    new = new.replace(v, mark)
                if new == data:
                    continue
                if (type_name, name) in JSON_LINES:
                    _still_json(type_name, row["seq"], data, new)
                values[name] = new if isinstance(cell, bytes) else new.decode("utf-8", "replace")
            if values:
                plan.changes.append(Change(type_name, row["seq"], values))


def _still_json(type_name: str, seq: int, before: bytes, after: bytes) -> None:
    try:
        json.loads(before)
    except ValueError:
        return  # a line that was not JSON (recorded as an error) need not become JSON
    try:
        json.loads(after)
    except ValueError as exc:
        raise UsageError(f"{type_name} at seq {seq}: the line would not parse as JSON once redacted ({exc}); "
                         "nothing was changed") from None


def redact(log: EventLog, key: bytes, found: pl.DataFrame) -> tuple[Plan, Redaction | None]:
    """Redact the values of ``found`` (rows of ``secret.found``); the plan and the redaction
    committed (None when no value was left to take out). The plan is made under the log's
    lock, every event sealed: an event recorded meanwhile is not missed."""
    plans: list[Plan] = []

    def changes(snap: Snapshot) -> list[Change]:
        plan = locate(snap, key, found)
        plan_changes(snap, plan)
        plans.append(plan)
        return plan.changes

    done = log.redact(changes, _who(), sorted(found["finding_id"].to_list()))
    return plans[-1], done


def _who() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a container)
        return "unknown"
