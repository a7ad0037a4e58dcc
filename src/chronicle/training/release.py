"""Releases: an export frozen at a checkpoint, checkable from the log ever after.

``freeze`` brings the tables up to date, exports them into a folder beside the
releases, records a ``release.frozen`` event (the checkpoint: seq and head hash;
the options; every file's sha256) as the commit point, then moves the folder to
``data/releases/NAME/``. The event's id is the name, so a name is released once.
``check`` rebuilds the tables from the log as it stood at the release's seq, exports
them again with the same options, and compares every byte: with the recorded
sha256s and with the files on disk.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec
import polars as pl

from chronicle.errors import UsageError
from chronicle.store.errors import ConflictingEvent
from chronicle.training import dataset, tables

if TYPE_CHECKING:
    from chronicle.workspace import Workspace

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


class ReleaseExists(UsageError):
    """A release of that name was made already; releases are never overwritten."""


def releases_dir(ws: Workspace) -> Path:
    return ws.data / "releases"


def recorded(ws: Workspace) -> pl.DataFrame:
    snap = ws.open_log().snapshot()
    return snap.frame("release.frozen").sort("seq").collect()


def find(ws: Workspace, name: str):
    from chronicle.events import ReleaseFrozen

    found = recorded(ws).filter(pl.col("name") == name)
    if not found.height:
        raise UsageError(f"no release named {name!r} (see `chronicle release list`)")
    return msgspec.convert(found.row(0, named=True), ReleaseFrozen)


def export(ws: Workspace, frame_tables: dict, options: dataset.Options, seq: int, head_hash: str,
           out: Path, title: str) -> dict[str, str]:
    """Write the export into ``out``; every file's sha256 by its path relative to ``out``."""
    from chronicle.secrets.mask import Masker

    written = dataset.write(dataset.rows(frame_tables, options, Masker.of(ws)), out, options, seq, head_hash, title)
    return {p.relative_to(out).as_posix(): _sha256(p) for p in written}


def freeze(ws: Workspace, name: str, options: dataset.Options, author: str):
    from chronicle.events import ReleaseFrozen

    if not _NAME.match(name) or name in ("list", "verify"):
        raise UsageError(f"release name {name!r}: letters, digits, '.', '_' and '-' (not 'list' or 'verify')")
    dataset.check(options)
    if recorded(ws).filter(pl.col("name") == name).height or (releases_dir(ws) / name).exists():
        raise ReleaseExists(f"release {name!r} exists already; releases are never overwritten (pick another name)")
    current, seq = tables.current(ws)
    head_hash = tables.head_hash_at(ws, seq)
    releases_dir(ws).mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=releases_dir(ws)))
    try:
        files = export(ws, current, options, seq, head_hash, staging, f"chronicle release {name}")
        event = ReleaseFrozen(stream=f"release:{name}", event_id=f"release:{name}", name=name, at_seq=seq,
                              head_hash=head_hash, options_json=json.dumps(msgspec.to_builtins(options), sort_keys=True),
                              files_json=json.dumps(files, sort_keys=True), author=author)
        try:
            ack = ws.open_log().append([event])[0]
        except ConflictingEvent:
            raise ReleaseExists(f"release {name!r} was just made by another process; releases are never overwritten") from None
        os.replace(staging, releases_dir(ws) / name)  # after the commit point: `release verify` rebuilds it if lost
        return msgspec.structs.replace(event, seq=ack.seq)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


@dataclass
class Check:
    name: str
    seq: int
    head_hash_ok: bool
    #: per file: "ok", "differs" (rebuilt bytes differ from the recorded), "altered" (the file on disk
    #: differs from the recorded), "missing" (not on disk)
    files: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.head_hash_ok and all(v == "ok" for v in self.files.values())


def check(ws: Workspace, name: str) -> Check:
    release = find(ws, name)
    options = msgspec.convert(json.loads(release.options_json), dataset.Options)
    files: dict[str, str] = json.loads(release.files_json)
    result = Check(name, release.at_seq, tables.head_hash_at(ws, release.at_seq) == release.head_hash)
    with tempfile.TemporaryDirectory(prefix="chronicle-release-") as tmp:
        rebuilt_tables = tables.as_of(ws, release.at_seq, Path(tmp) / "tables")
        again = export(ws, rebuilt_tables, options, release.at_seq, release.head_hash, Path(tmp) / "export",
                       f"chronicle release {name}")
    on_disk = releases_dir(ws) / name
    for path, digest in sorted(files.items()):
        local = on_disk / path
        if again.get(path) != digest:
            result.files[path] = "differs"
        elif not local.exists():
            result.files[path] = "missing"
        elif _sha256(local) != digest:
            result.files[path] = "altered"
        else:
            result.files[path] = "ok"
    for path in sorted(set(again) - set(files)):
        result.files[path] = "differs"
    return result


def _sha256(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()
