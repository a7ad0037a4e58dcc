"""``secret.*``: secrets found in recorded text, never the secrets themselves.

A ``secret.found`` says where a value that a rule recognises lies: the event
(``target_seq``, its type, stream and id), the field, and the byte range of
the value in that field's UTF-8 bytes (for ``raw``, in the line itself); which
rule; and ``value_hash``, an HMAC-SHA256 of the value keyed by the workspace's
own salt (``data/secrets.salt``), so two findings of one value can be matched
without the log holding anything that reveals it. ``finding_id`` is derived
from where and what it found; a scan (one at a time per workspace) records a
finding only once.

``secret.allowed`` marks a finding as not a secret (a false positive): it is
shown again. ``secrets.scanned`` is a scan's checkpoint: every event in seqs
(``from_seq``, ``upto_seq``] was scanned with the rules of ``rules_version``
(an ingest scans what each of its commits recorded; a catch-up scan, the gaps).
"""

from __future__ import annotations

from .envelope import Event


class SecretFound(Event, frozen=True, tag="secret.found"):
    finding_id: str
    target_seq: int
    target_type: str
    target_stream: str
    target_event_id: str
    field: str
    start: int
    end: int
    rule: str
    value_hash: str


class SecretAllowed(Event, frozen=True, tag="secret.allowed"):
    finding_id: str
    reason: str | None = None


class SecretsScanned(Event, frozen=True, tag="secrets.scanned"):
    #: Every event in seqs (from_seq, upto_seq] was scanned.
    upto_seq: int
    rules_version: str
    findings: int
    from_seq: int = 0
