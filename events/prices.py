"""``prices.imported``: a price table the user imported (``chronicle prices import``).

The table is recorded whole, in chronicle's own shape (the shipped
``projections/claude_prices.json``), with the file it came from and that
file's hash: which prices a cost was computed with is in the log, and a
rebuild at any seq prices as the table then in force did.
"""

from __future__ import annotations

from .envelope import Event


class PricesImported(Event, frozen=True, tag="prices.imported"):
    #: The file imported, as given.
    source: str
    #: sha256 of that file's bytes.
    sha256: str
    #: "litellm" (model_prices_and_context_window.json) or "chronicle" (the shipped shape).
    format: str
    #: The table: {"version", "source", "models": {model id: [{"from", "input", "output",
    #: "cache_write_5m", "cache_write_1h", "cache_read"}]}}, rates per million tokens.
    table_json: str
