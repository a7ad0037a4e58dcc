"""A workspace: a directory with ``data/log`` (precious) and rebuildable outputs.

The root is ``--root``, else ``$CHRONICLE_ROOT``, else the current directory.
``chronicle.toml`` at the root is optional; it is decoded once, into
:class:`chronicle.config.Config`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from chronicle import config as config_file
from chronicle.config import Config

if TYPE_CHECKING:
    from chronicle.store import EventLog


@dataclass
class Workspace:
    root: Path
    config: Config = field(default_factory=Config)

    @classmethod
    def at(cls, root: str | os.PathLike | None = None) -> Workspace:
        chosen = Path(root or os.environ.get("CHRONICLE_ROOT") or ".").resolve()
        return cls(chosen, config_file.load(chosen))

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def log_dir(self) -> Path:
        return self.data / "log"

    @property
    def tables_dir(self) -> Path:
        return self.data / "tables"

    def projection_dirs(self) -> list[Path]:
        """Extra projection folders named in chronicle.toml ``[projections] paths``."""
        return [(self.root / p).resolve() for p in self.config.projections.paths]

    def init(self) -> EventLog:
        for sub in ("tables", "docs", "1_raw", "cohorts", "taxonomies"):
            (self.data / sub).mkdir(parents=True, exist_ok=True)
        from chronicle.store import EventLog  # not at import: a light command (search) needs no Arrow

        return EventLog.init(self.log_dir)

    def open_log(self) -> EventLog:
        from chronicle.store import EventLog

        return EventLog(self.log_dir)
