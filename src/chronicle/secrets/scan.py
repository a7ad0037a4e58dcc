"""Finding secrets in the log: incrementally, resumably, as ``secret.found`` events.

A scan reads the text fields of the events that carry outside text (every
transcript line, sidecar, prompt and response) from the last checkpoint on,
lets the Rust regex engine behind Polars pick out the few values that match
any rule (in parallel, straight from the segments), and runs each rule with
Python's ``re`` only over those to find where each secret lies. Findings and a
``secrets.scanned`` checkpoint are appended together, a window of events at a
time: a scan stopped midway resumes from its last checkpoint. A finding's id
is derived from where and what it found, and scans take turns (a lock), so
nothing is recorded twice.
When the rules change (``rules.VERSION``), the next scan reads every event
again. Ingest, ``run`` and the daemon scan what they recorded before they
return; ``chronicle secrets scan`` catches up on demand.

A value's hash is an HMAC-SHA256 keyed by the workspace's salt, a random file
(``data/secrets.salt``, readable by its owner only) that never enters the
log: the log holds no function of a secret anyone without the workspace can
test guesses against.
"""

from __future__ import annotations

import bisect

import base64
import hashlib
import hmac
import os
import re
import secrets as random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import polars as pl

from chronicle.events import SecretFound, SecretsScanned
from chronicle.secrets import rules
from chronicle.secrets.rules import Rule
from chronicle.store import EventLog, Snapshot
from chronicle.store.acks import FreshAcks
from chronicle.store.fsutil import locked, write_durably

#: Event type -> its fields that hold text from outside (a transcript, a model, a template).
TARGETS: dict[str, tuple[str, ...]] = {
    "session.line": ("raw",), "codex.line": ("raw",), "session.meta": ("raw",),
    "llm.prompt": ("prompt",), "llm.response": ("text",),
}
#: Events read per checkpoint (a stopped scan loses at most this much work).
WINDOW = 50_000
SALT_NAME = "secrets.salt"
_DIGITS = frozenset(b"0123456789")
#: The rules run over decoded base64 (every rule but the one that decodes).
_PLAIN_RULES = [k for k, r in enumerate(rules.RULES) if not r.decodes]


def salt(data_dir: Path) -> bytes:
    """The workspace's salt, made on first use (32 random bytes, mode 0600)."""
    path = data_dir / SALT_NAME
    try:
        return path.read_bytes()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    fresh = random.token_bytes(32)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.close(fd)
    write_durably(tmp, fresh)
    try:
        os.link(tmp, path)  # the first process to make one wins; the others read it
    except FileExistsError:
        pass
    tmp.unlink(missing_ok=True)
    return path.read_bytes()


def value_hash(key: bytes, value: bytes) -> str:
    return hmac.new(key, value, hashlib.sha256).hexdigest()[:32]


def finding_id(seq: int, field: str, start: int, end: int, rule: str) -> str:
    """``s`` and 11 hex digits, from where and what was found (a scan again finds the same id)."""
    return "s" + hashlib.sha256(f"{seq}:{field}:{start}:{end}:{rule}".encode()).hexdigest()[:11]


class Hit(NamedTuple):
    """A secret in some bytes: the rule's name, the span to mask or cut, and the secret's bytes
    (the span's own, or for a secret inside base64, the decoded value the span encodes)."""

    rule: str
    start: int
    end: int
    value: bytes


def find(data: bytes, only: list[int] | None = None) -> Iterator[Hit]:
    """Every secret in ``data`` (by the rules at indexes ``only``, if given: those the quick
    patterns say may match); a span two rules find is the first's."""
    taken: list[tuple[int, int]] = []
    for rule in rules.RULES if only is None else [rules.RULES[i] for i in only]:
        for m in rule.compiled.finditer(data):
            hits = _in_base64(data, m.start(), m.end()) if rule.decodes else [_direct(rule, m, data)]
            for hit in hits:
                if hit is None or any(s < hit.end and hit.start < e for s, e in taken):
                    continue
                taken.append((hit.start, hit.end))
                yield hit


def _direct(rule: Rule, m: re.Match[bytes], data: bytes) -> Hit | None:
    start, end = rules.value_span(rule, m)
    if end <= start or (rule.min_digits and sum(b in _DIGITS for b in data[start:end]) < rule.min_digits):
        return None
    return Hit(rule.name, start, end, data[start:end])


def _in_base64(data: bytes, start: int, end: int) -> list[Hit]:
    """The secrets inside the base64 text at ``data[start:end]`` (line breaks, read or as JSON's
    ``\\n``, skipped): each as the span of base64 characters that encode it, whole groups of four."""
    where: list[int] = []  # where each base64 character of the text lies in data
    i = start
    while i < end:
        if data[i] == 0x5C:  # the \ of a \n
            i += 2
            continue
        if data[i] != 0x0A:
            where.append(i)
        i += 1
    text = bytes(data[k] for k in where)
    text = text[: len(text) - len(text) % 4]
    try:
        decoded = base64.b64decode(text, validate=True)
    except ValueError:
        return []
    hits = []
    for inner in find(decoded, _PLAIN_RULES):
        first, last = 4 * (inner.start // 3), 4 * -(-inner.end // 3) - 1
        if last >= len(where):
            continue
        hits.append(Hit(f"base64:{inner.rule}", where[first], where[last] + 1, inner.value))
    return hits


@dataclass
class ScanSummary:
    start_seq: int = 0
    upto_seq: int = 0
    #: Events of the types that carry outside text (``TARGETS``) read
    events_scanned: int = 0
    findings: int = 0
    rules_version: str = rules.VERSION
    full: bool = False


def covered(snap: Snapshot) -> list[tuple[int, int]]:
    """The seq ranges (lo, hi] scanned with the current rules, merged, in order."""
    if "secrets.scanned" not in snap.types():
        return []
    ranges = (snap.frame("secrets.scanned", ["from_seq", "upto_seq", "rules_version"])
              .filter(pl.col("rules_version") == rules.VERSION).select("from_seq", "upto_seq")
              .sort("from_seq").collect().rows())
    merged: list[tuple[int, int]] = []
    for lo, hi in ranges:
        if merged and lo <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], hi))
        else:
            merged.append((lo, hi))
    return merged


def gaps(done: list[tuple[int, int]], head: int) -> list[tuple[int, int]]:
    """The seq ranges (lo, hi] up to ``head`` that ``done`` leaves out."""
    out, pos = [], 0
    for lo, hi in done:
        if lo > pos:
            out.append((pos, min(lo, head)))
        pos = max(pos, hi)
    if pos < head:
        out.append((pos, head))
    return [(lo, hi) for lo, hi in out if hi > lo]


def rules_to_run(values: pl.Series) -> pl.Series:
    """For each value (text or bytes), the indexes of the rules whose quick pattern matches it
    (every rule, where bytes are not UTF-8; none for a null). One pass per rule as a column of
    one select, which Polars runs side by side: each looks for its literal first, where one
    alternation of them all crawled, and one ``any_horizontal`` of them ran one after another."""
    text = values.cast(pl.String, strict=False) if values.dtype == pl.Binary else values
    unreadable = text.is_null() & values.is_not_null()
    each = pl.DataFrame({"t": text}).select(pl.col("t").str.contains(r.prefilter).alias(f"_q{i}")
                                           for i, r in enumerate(rules.RULES))
    return each.select(pl.concat_list(pl.when(pl.col(f"_q{i}") | pl.lit(unreadable)).then(pl.lit(i))
                                      for i in range(len(rules.RULES))).list.drop_nulls()).to_series()


def _seqs_after(snap: Snapshot, types: set[str], lo: int) -> list[int]:
    """The seqs after ``lo`` of the events of ``types``, in order."""
    frames = [snap.frame(t, ["seq"]).filter(pl.col("seq") > lo) for t in sorted(types)]
    return pl.concat(frames).sort("seq").collect()["seq"].to_list() if frames else []


def _find_in(snap: Snapshot, targets: list[tuple[str, str]], lo: int, hi: int, key: bytes,
             recorded: set[str]) -> list[SecretFound]:
    """The findings in seqs (lo, hi] not recorded yet (``recorded`` grows with them)."""
    found = []
    for type_name, field in targets:
        for seq, event_id, stream, value, only in _flagged(snap, type_name, field, lo, hi).iter_rows():
            data = value if isinstance(value, bytes) else value.encode()
            for hit in find(data, only):
                fid = finding_id(seq, field, hit.start, hit.end, hit.rule)
                if fid in recorded:
                    continue
                recorded.add(fid)
                found.append(SecretFound(
                    stream="secrets", finding_id=fid, target_seq=seq, target_type=type_name, target_stream=stream,
                    target_event_id=event_id, field=field, start=hit.start, end=hit.end, rule=hit.rule,
                    value_hash=value_hash(key, hit.value)))
    return found


def _flagged(snap: Snapshot, type_name: str, field: str, lo: int, hi: int) -> pl.DataFrame:
    """The events of ``type_name`` in seqs (lo, hi] whose ``field`` any rule may match."""
    rows = (snap.frame(type_name, ["seq", "event_id", "stream", field]).filter(pl.col("seq").is_between(lo + 1, hi))
            .collect())
    return rows.with_columns(rules_to_run(rows[field]).alias("_rules")).filter(pl.col("_rules").list.len() > 0)


def scan(log: EventLog, data_dir: Path, *, full: bool = False,
         on_window: Callable[[int, int], None] | None = None) -> ScanSummary:
    """Scan every seq range no checkpoint of the current rules covers (everything with ``full``)."""
    key = salt(data_dir)
    with locked(data_dir / "secrets.lock"):
        snap = log.snapshot()
        head = snap.head
        done = [] if full else covered(snap)
        todo = gaps(done, head)
        summary = ScanSummary(start_seq=todo[0][0] if todo else head, upto_seq=head,
                              full=full or (not done and "secrets.scanned" in snap.types()))
        present = set(snap.types())
        targets = [(t, f) for t, fields in TARGETS.items() if t in present for f in fields]
        # The findings recorded already (a few): a scan again (new rules, one stopped midway) skips
        # them. Their ids are not event ids, which would make this append look up every event id.
        recorded = set(snap.frame("secret.found", ["finding_id"]).collect()["finding_id"].to_list()
                       if "secret.found" in present else [])
        windows = [(lo, min(lo + WINDOW, end)) for start, end in todo for lo in range(start, end, WINDOW)]
        # Which windows hold any event with text, from one read of each type's seqs: a window of
        # none (a scan's own checkpoints, say) is never recorded, so it stays a gap; it must cost
        # nothing the next time either.
        texts = _seqs_after(snap, {t for t, _ in targets}, windows[0][0]) if windows else []
        for lo, hi in windows:
            scanned = bisect.bisect_right(texts, hi) - bisect.bisect_right(texts, lo)
            found = _find_in(snap, targets, lo, hi, key, recorded) if scanned else []
            if scanned:
                log.append([*found, SecretsScanned(stream="secrets", from_seq=lo, upto_seq=hi,
                                                   rules_version=rules.VERSION, findings=len(found))])
            summary.events_scanned += scanned
            summary.findings += len(found)
            if on_window:
                on_window(lo, hi)
        return summary


class CommitScanner:
    """Scans an ingest's commits as they are made, from the chunks in memory (nothing is
    read back): ``flag`` picks out, on the thread that prepares a batch, the lines any rule
    may match; ``committed`` finds the secrets in them once the commit has given them seqs;
    ``record`` appends the findings and the seq ranges the commits covered, so the scan that
    follows an ingest reads only what others recorded meanwhile."""

    def __init__(self, data_dir: Path):
        self.key = salt(data_dir)
        self.findings: list[SecretFound] = []
        self.ranges: list[tuple[int, int]] = []

    def flag(self, type_name: str, table) -> list[tuple[str, str, str, bytes, list[int] | None]]:
        """(type, event_id, stream, raw, rules to run) of the rows of a line table worth a look."""
        frame = pl.from_arrow(table.select(["event_id", "stream", "raw"]))
        assert isinstance(frame, pl.DataFrame)
        rows = frame.with_columns(rules_to_run(frame["raw"]).alias("_rules")).filter(pl.col("_rules").list.len() > 0)
        return [(type_name, eid, stream, raw, only) for eid, stream, raw, only in rows.iter_rows()]

    def flag_event(self, ev) -> list[tuple[str, str, str, bytes, list[int] | None]]:
        """The same for one event of a type that carries outside text (a sidecar file)."""
        fields = TARGETS.get(ev.type_name(), ())
        return [(ev.type_name(), ev.event_id, ev.stream, getattr(ev, f), None) for f in fields]

    def committed(self, flags: list, acks) -> None:
        """A commit landed with ``acks`` (in its events' order): note the seqs it covered,
        and find the secrets in its flagged events."""
        if isinstance(acks, FreshAcks):  # every event new, seqs consecutive
            lo, hi = acks[0].seq, acks[-1].seq
        else:
            fresh = [a.seq for a in acks if not a.duplicate]
            if not fresh:
                return
            lo, hi = min(fresh), max(fresh)
        self.ranges.append((lo - 1, hi))
        if not flags:
            return
        seq_of = {a.event_id: a.seq for a in acks if not a.duplicate}
        for type_name, event_id, stream, value, only in flags:
            seq = seq_of.get(event_id)
            if seq is None or value is None:
                continue  # recorded before: its scan was that commit's
            data = value if isinstance(value, bytes) else value.encode()
            field = TARGETS[type_name][0]
            for hit in find(data, only):
                self.findings.append(SecretFound(
                    stream="secrets", finding_id=finding_id(seq, field, hit.start, hit.end, hit.rule), target_seq=seq,
                    target_type=type_name, target_stream=stream, target_event_id=event_id, field=field,
                    start=hit.start, end=hit.end, rule=hit.rule, value_hash=value_hash(self.key, hit.value)))

    def record(self, log: EventLog) -> int:
        """Append the findings and the ranges covered (merged); the number of findings."""
        merged: list[tuple[int, int]] = []
        for lo, hi in sorted(self.ranges):
            if merged and lo <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(merged[-1][1], hi))
            else:
                merged.append((lo, hi))
        if merged:
            log.append([*self.findings, *(SecretsScanned(stream="secrets", from_seq=lo, upto_seq=hi,
                                                         rules_version=rules.VERSION,
                                                         findings=len(self.findings) if k == 0 else 0)
                                          for k, (lo, hi) in enumerate(merged))])
        found = len(self.findings)
        self.findings, self.ranges = [], []
        return found
