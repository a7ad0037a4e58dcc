"""Masking: what chronicle shows or ships has every secret replaced by ``[secret:RULE]``.

Masking runs the rules over the text as it leaves (a table cell, an event
printed, a page, an exported file), so it holds whatever the text went
through on its way from the log (JSON decoding, Markdown rendering) and
whether or not a scan has recorded the finding yet. A value a finding was
allowed for (``chronicle secrets allow``) is left as it is: the allowed
findings' value hashes are compared under the workspace's salt.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

import msgspec

from chronicle.secrets import rules
from chronicle.secrets.scan import SALT_NAME, value_hash

if TYPE_CHECKING:
    import polars as pl

    from chronicle.events import Event
    from chronicle.workspace import Workspace

AnyStr = TypeVar("AnyStr", str, bytes)
_DIGITS = frozenset("0123456789")


class Masker:
    def __init__(self, key: bytes | None = None, allowed: frozenset[str] = frozenset()):
        self.key = key
        self.allowed = allowed

    @classmethod
    def of(cls, ws: Workspace) -> Masker:
        """The workspace's: its salt and the value hashes of the findings allowed in its log."""
        try:
            key = (ws.data / SALT_NAME).read_bytes()
        except FileNotFoundError:
            return cls()
        snap = ws.open_log().snapshot()
        if "secret.allowed" not in snap.types():
            return cls(key)
        import polars as pl

        allowed = snap.frame("secret.allowed", ["finding_id"]).join(
            snap.frame("secret.found", ["finding_id", "value_hash"]), on="finding_id")
        return cls(key, frozenset(allowed.select(pl.col("value_hash")).collect()["value_hash"].to_list()))

    def _keep(self, value: str | bytes) -> bool:
        if not self.allowed or self.key is None:
            return False
        return value_hash(self.key, value if isinstance(value, bytes) else value.encode()) in self.allowed

    def _mask(self, data: AnyStr, compiled: Callable[[rules.Rule], re.Pattern[AnyStr]],
              placeholder: Callable[[str], AnyStr]) -> AnyStr:
        spans: list[tuple[int, int, str]] = []
        for rule in rules.RULES:
            for m in compiled(rule).finditer(data):
                start, end = rules.value_span(rule, m)
                value = data[start:end]
                if end <= start or any(s < end and start < e for s, e, _ in spans):
                    continue
                digits = sum(c in _DIGITS for c in (value.decode("latin-1") if isinstance(value, bytes) else value))
                if digits < rule.min_digits or self._keep(value):
                    continue
                spans.append((start, end, rule.name))
        for start, end, name in sorted(spans, reverse=True):
            data = data[:start] + placeholder(name) + data[end:]
        return data

    def text(self, text: str) -> str:
        return self._mask(text, lambda r: r.compiled_text, lambda name: f"[secret:{name}]")

    def bytes(self, data: bytes) -> bytes:
        return self._mask(data, lambda r: r.compiled, lambda name: f"[secret:{name}]".encode())

    def value(self, value: object) -> object:
        """A str or bytes masked; anything else as it is (lists and dicts walked)."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, bytes):
            return self.bytes(value)
        if isinstance(value, list):
            return [self.value(v) for v in value]
        if isinstance(value, dict):
            return {k: self.value(v) for k, v in value.items()}
        return value

    def event(self, ev: Event) -> Event:
        """``ev`` with its text and bytes fields masked."""
        changed = {}
        for name in ev.__struct_fields__:
            value = getattr(ev, name)
            if isinstance(value, (str, bytes)):
                masked = self.value(value)
                if masked != value:
                    changed[name] = masked
        return msgspec.structs.replace(ev, **changed) if changed else ev

    def frame(self, df: pl.DataFrame) -> pl.DataFrame:
        """Every text cell of ``df`` masked (the Rust engine picks out the cells to look at)."""
        import polars as pl

        out = {}
        for name, dtype in df.schema.items():
            if dtype not in (pl.String, pl.Binary):
                continue
            col = df[name]
            text = col.cast(pl.String, strict=False) if dtype == pl.Binary else col
            quick = pl.any_horizontal([pl.lit(text).str.contains(r.prefilter) for r in rules.RULES])
            hits = pl.select(quick | (pl.lit(text).is_null() & pl.lit(col).is_not_null())).to_series()
            if hits.any():
                out[name] = pl.Series(name, [self.value(v) if h and v is not None else v
                                             for v, h in zip(col.to_list(), hits.to_list())], dtype=dtype)
        return df.with_columns(list(out.values())) if out else df
