"""A projection's code version: what its checkpoint records, so changed code rebuilds.

Kept apart from the engine (and light: no Polars) so that a reader can tell
whether a table is current without loading the projection.
"""

from __future__ import annotations

import hashlib
from importlib.util import find_spec
from pathlib import Path

import chronicle.projections as builtin_projections

ENGINE_VERSION = "1"


def shared_source() -> bytes:
    """Helpers (``_*.py``) and data (``*.json``) of the built-in projections:
    part of every built-in projection's code version, so editing a price
    table or a shared helper rebuilds what depends on it."""
    folder = Path(builtin_projections.__path__[0])
    files = sorted([*folder.glob("_*.py"), *folder.glob("*.json")])
    return b"".join(f.name.encode() + b"\0" + f.read_bytes() for f in files)


def code_version(source: bytes) -> str:
    return hashlib.sha256(ENGINE_VERSION.encode() + source).hexdigest()[:16]


def builtin_code_version(name: str) -> str:
    """The code version of a built-in projection without a DATA_FILES list, read without importing it."""
    spec = find_spec(f"chronicle.projections.{name}")
    assert spec is not None and spec.origin is not None
    return code_version(Path(spec.origin).read_bytes() + shared_source())
