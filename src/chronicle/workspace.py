"""A workspace: a directory with ``data/log`` (precious) and rebuildable outputs.

The root is ``--root``, else ``$CHRONICLE_ROOT``, else the current directory.
``chronicle.toml`` at the root is optional.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from chronicle.errors import UsageError

if TYPE_CHECKING:
    from chronicle.store import EventLog

CONFIG_NAME = "chronicle.toml"


class ConfigError(UsageError, ValueError):
    """chronicle.toml is unreadable or has a wrong value (names the key)."""


@dataclass
class Workspace:
    root: Path
    config: dict = field(default_factory=dict)

    @classmethod
    def at(cls, root: str | os.PathLike | None = None) -> Workspace:
        chosen = Path(root or os.environ.get("CHRONICLE_ROOT") or ".").resolve()
        cfg_path = chosen / CONFIG_NAME
        config: dict = {}
        if cfg_path.exists():
            try:
                config = tomllib.loads(cfg_path.read_text(encoding="utf-8"))
            except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
                raise ConfigError(f"{cfg_path}: {exc}") from None
        return cls(chosen, config)

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
        paths = self.config.get("projections", {}).get("paths", [])
        if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
            raise ConfigError(f"{self.root / CONFIG_NAME}: [projections] paths must be a list of strings")
        return [(self.root / p).resolve() for p in paths]

    def init(self) -> EventLog:
        for sub in ("tables", "docs", "1_raw", "cohorts", "taxonomies"):
            (self.data / sub).mkdir(parents=True, exist_ok=True)
        from chronicle.store import EventLog  # not at import: a light command (search) needs no Arrow

        return EventLog.init(self.log_dir)

    def open_log(self) -> EventLog:
        from chronicle.store import EventLog

        return EventLog(self.log_dir)
