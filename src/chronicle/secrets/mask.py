"""Masking: what chronicle shows or ships has every secret replaced by ``[secret:RULE]``.

Masking runs the rules over the text as it leaves (a table cell, an event
printed, a page, an exported file), so it holds whatever the text went
through on its way from the log (JSON decoding, Markdown rendering) and
whether or not a scan has recorded the finding yet. A value a finding was
allowed for (``chronicle secrets allow``) is left as it is: the allowed
findings' value hashes are compared under the workspace's salt.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import msgspec

from chronicle.secrets.scan import SALT_NAME, find, rules_to_run, value_hash

if TYPE_CHECKING:
    import polars as pl

    from chronicle.events import Event
    from chronicle.workspace import Workspace


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

    def _keep(self, value: bytes) -> bool:
        return bool(self.allowed) and self.key is not None and value_hash(self.key, value) in self.allowed

    def bytes(self, data: bytes, only: list[int] | None = None) -> bytes:
        """``data`` with each secret ``find`` finds replaced (spans from the end, so the
        earlier ones stay put); ``only``: the rules to run, as ``rules_to_run`` picks them."""
        for hit in sorted(find(data, only), key=lambda hit: -hit.start):
            if not self._keep(hit.value):
                data = data[: hit.start] + f"[secret:{hit.rule}]".encode() + data[hit.end :]
        return data

    def text(self, text: str, only: list[int] | None = None) -> str:
        # a match starts and stops at ASCII bytes, so no span splits a character ("replace"
        # only so that a display never fails)
        return self.bytes(text.encode(), only).decode("utf-8", "replace")

    def finalize(self, value: object) -> object:
        """For a template's ``finalize``: text masked, and HTML a filter made (``Markup``) kept
        HTML, since a ``[secret:RULE]`` holds nothing to escape."""
        if not isinstance(value, str):
            return value
        from markupsafe import Markup

        return Markup(self.text(value)) if isinstance(value, Markup) else self.text(value)

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
        """Every text and bytes cell of ``df`` masked, and every text in a list of texts (the Rust
        engine picks out the cells, and the rules, to look at)."""
        import polars as pl

        out = []
        for name, dtype in df.schema.items():
            col = df[name]
            if dtype in (pl.String, pl.Binary):
                todo = rules_to_run(col)
                if todo.list.len().max():
                    mask = self.bytes if dtype == pl.Binary else self.text
                    cells = [mask(v, only) if only else v for v, only in zip(col.to_list(), todo.to_list())]
                    out.append(pl.Series(name, cells, dtype=dtype))
            elif dtype == pl.List(pl.String) and rules_to_run(col.explode()).list.len().max():
                out.append(pl.Series(name, [self.value(v) for v in col.to_list()], dtype=dtype))
        return df.with_columns(out) if out else df
