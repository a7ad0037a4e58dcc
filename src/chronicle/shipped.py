"""Data that ships with chronicle: the taxonomies and the demo's examples.

They live in the repository's ``data/`` and are installed as the package
``chronicle.data`` (see pyproject.toml), so a checkout, an editable install
and a wheel all find them the same way.
"""

from __future__ import annotations

from pathlib import Path


def data_dir() -> Path:
    import chronicle.data  # data/ in a checkout, chronicle/data/ in a wheel

    return Path(chronicle.data.__file__).parent


TAXONOMIES = data_dir() / "taxonomies"
EXAMPLES = data_dir() / "examples"
