"""A small progress bar on stderr, shown only when stderr is a terminal."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    def __init__(self, total: float, label: str, unit: str = "", stream: TextIO | None = None):
        self.total = total
        self.label = label
        self.unit = unit
        self.done = 0.0
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty()
        self.started = time.monotonic()
        self._last = 0.0

    def advance(self, amount: float = 1, note: str = "") -> None:
        self.done += amount
        now = time.monotonic()
        if self.enabled and (now - self._last > 0.1 or self.done >= self.total):
            self._last = now
            self._draw(note)

    def _draw(self, note: str) -> None:
        width = 28
        frac = min(1.0, self.done / self.total) if self.total else 1.0
        bar = "#" * int(frac * width) + "-" * (width - int(frac * width))
        rate = self.done / max(time.monotonic() - self.started, 1e-9)
        self.stream.write(f"\r{self.label} [{bar}] {self.done:,.0f}/{self.total:,.0f}{self.unit} {rate:,.0f}{self.unit}/s {note[:30]:<30}")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\r" + " " * 100 + "\r")
            self.stream.flush()
