"""Remotes: this workspace's log pushed to an object store, other producers' logs pulled from it.

Every workspace is a *producer* with an id of its own (``data/producer.json``).
A remote is an S3-compatible URL, ``s3://bucket[/prefix]``; under it each
producer's log is kept apart, so producers never write to the same objects::

    producers/<id>/PRODUCER      the claim: who holds the id (put-if-absent, never overwritten)
    producers/<id>/manifest/...  its MANIFEST, one object per line (``store.object_storage``)
    producers/<id>/segments/...  its segment files

``push`` seals the WAL, then for each MANIFEST line the remote lacks uploads the
files it names (each checked by the hash the store computed) and commits the
line put-if-absent: idempotent (what is there is not sent again), resumable
(a killed push leaves files no line names yet, sent again next time) and
never forking (the remote's lines must be this log's first lines, byte for
byte). A redaction pushed removes the replaced files from the remote too.

``pull`` mirrors every other producer's log into ``data/remotes/<remote>/<id>/``,
a read-only log folder: the lines are checked as a chain before anything is
written, each file against the sha256 its line records, and the lines are
appended only once their files are in place (the commit point, as for a
seal). A redaction pulled removes the replaced files from the mirror. A
remote whose history no longer extends the mirror's is refused, the mirror
kept as it was.

Credentials come from the standard AWS environment; nothing here writes them.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import socket
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import msgspec

from chronicle.errors import UsageError
from chronicle.store import manifest
from chronicle.store.errors import CorruptionError
from chronicle.store.fsutil import fsync_dir, write_durably
from chronicle.store.object_storage import ObjectStorage, RemoteError, remote_error, s3_store

PRODUCER_FILE = "producer.json"
REMOTES_FILE = "remotes.json"
_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
#: Files sent or fetched side by side (the store's latency, not this machine, is what they wait on).
TRANSFERS = 8


class Producer(msgspec.Struct, frozen=True):
    id: str
    #: Proves this workspace holds the id: the remote's claim keeps only its sha256.
    token: str


class RemoteConfig(msgspec.Struct, frozen=True):
    url: str
    endpoint: str | None = None


class Claim(msgspec.Struct, frozen=True):
    id: str
    token_sha256: str
    claimed_at: str


# ----------------------------------------------------------------- local state


def producer(data_dir: Path, wanted: str | None = None) -> Producer:
    """This workspace's producer id (made on first use: the host's name and 6 random hex digits)."""
    path = data_dir / PRODUCER_FILE
    try:
        found = msgspec.json.decode(path.read_bytes(), type=Producer)
    except FileNotFoundError:
        found = None
    if found is not None:
        if wanted and wanted != found.id:
            raise UsageError(f"this workspace is producer {found.id!r} already ({path}); an id is kept for good")
        return found
    pid = wanted or f"{re.sub(r'[^a-z0-9-]+', '-', socket.gethostname().lower()).strip('-')[:40] or 'host'}-{secrets.token_hex(3)}"
    if not _ID.match(pid):
        raise UsageError(f"producer id {pid!r}: use lower-case letters, digits and '-' (at most 63)")
    made = Producer(pid, secrets.token_hex(16))
    path.parent.mkdir(parents=True, exist_ok=True)
    write_durably(path, msgspec.json.encode(made))
    os.chmod(path, 0o600)
    return made


def remotes(data_dir: Path) -> dict[str, RemoteConfig]:
    try:
        return msgspec.json.decode((data_dir / REMOTES_FILE).read_bytes(), type=dict[str, RemoteConfig])
    except FileNotFoundError:
        return {}
    except msgspec.DecodeError as exc:
        raise UsageError(f"{data_dir / REMOTES_FILE}: not a remotes file ({exc})") from None


def remote(data_dir: Path, name: str | None) -> tuple[str, RemoteConfig]:
    known = remotes(data_dir)
    if name is None:
        if len(known) != 1:
            raise UsageError("name the remote (chronicle remote list)" if known else
                             "no remote yet: chronicle remote add NAME s3://bucket/prefix")
        name = next(iter(known))
    if name not in known:
        raise UsageError(f"no remote {name!r} (known: {', '.join(sorted(known)) or 'none'})")
    return name, known[name]


def add_remote(data_dir: Path, name: str, url: str, endpoint: str | None, wanted: str | None) -> Producer:
    """Record a remote and claim this workspace's producer id on it (refused if another holds it)."""
    if not _NAME.match(name):
        raise UsageError(f"remote name {name!r}: letters, digits, '.', '_' and '-'")
    known = remotes(data_dir)
    if name in known:
        raise UsageError(f"remote {name!r} exists already ({known[name].url})")
    config = RemoteConfig(url.rstrip("/"), endpoint)
    me = producer(data_dir, wanted)
    claim(config, me)
    known[name] = config
    write_durably(data_dir / REMOTES_FILE, msgspec.json.format(msgspec.json.encode(known)) + b"\n")
    return me


def _store(config: RemoteConfig, sub: str = "") -> Any:
    return s3_store(config.url + (f"/{sub}" if sub else ""), config.endpoint)


def claim(config: RemoteConfig, me: Producer) -> None:
    """Put this producer's claim on the remote, or check the one there is ours."""
    import obstore

    store = _store(config, f"producers/{me.id}")
    where = f"{config.url}/producers/{me.id}/PRODUCER"
    mine = Claim(me.id, hashlib.sha256(me.token.encode()).hexdigest(),
                 datetime.now(timezone.utc).isoformat(timespec="seconds"))
    try:
        obstore.put(store, "PRODUCER", msgspec.json.encode(mine), mode="create")
        return
    except Exception as exc:
        if type(exc).__name__ != "AlreadyExistsError":
            raise remote_error(f"claiming {where}", exc) from None
    try:
        there = msgspec.json.decode(bytes(obstore.get(store, "PRODUCER").bytes()), type=Claim)
    except msgspec.DecodeError:
        raise RemoteError(f"{where}: not a producer claim") from None
    except Exception as exc:
        raise remote_error(f"reading {where}", exc) from None
    if there.token_sha256 != mine.token_sha256:
        raise UsageError(f"producer id {me.id!r} is taken on {config.url} (claimed {there.claimed_at} by another "
                         "workspace): pick another with `chronicle remote add NAME URL --producer ID` in a "
                         "workspace that has none yet")


def _storage(data_dir: Path, name: str, config: RemoteConfig, pid: str) -> ObjectStorage:
    return ObjectStorage(_store(config, f"producers/{pid}"), data_dir / "remotes" / name / ".cache" / pid,
                         where=f"{config.url}/producers/{pid}")


def _lines(data: bytes) -> list[bytes]:
    return data.splitlines(keepends=True)


def _files(line: bytes) -> list[manifest.SegmentFile]:
    """The files a MANIFEST line names (a segment entry's, or the copies a redaction puts)."""
    if manifest.REDACTION_MARK in line:
        return [rf.file for rf in msgspec.json.decode(line, type=manifest.Redaction).files]
    return list(msgspec.json.decode(line, type=manifest.ManifestEntry).files)


# ------------------------------------------------------------------ push


@dataclass
class Pushed:
    remote: str
    producer: str
    lines: int = 0
    files: int = 0
    bytes: int = 0
    removed: int = 0
    remote_lines: int = 0


class SecretsPending(UsageError):
    """A push would send secrets found in the log that were neither redacted nor allowed."""


def push(log, data_dir: Path, name: str | None = None, on_file=None, *, include_secrets: bool = False) -> Pushed:
    """Send what the remote lacks of this log (see the module's docstring). Refused, with nothing
    sent, while what it would send holds secrets neither redacted nor allowed (``SecretsPending``),
    unless ``include_secrets``."""
    name, config = remote(data_dir, name)
    me = producer(data_dir)
    claim(config, me)
    target = _storage(data_dir, name, config, me.id)
    there = _lines(target.read_commits())
    if not include_secrets:  # before the seal: what this check records is sealed and sent with the rest
        pending = secrets_pending(log, data_dir, _sealed_head(there))
        if pending:
            raise SecretsPending(
                f"{pending} secret(s) found in what this push would send, neither redacted nor allowed: "
                "`chronicle secrets list`, then `chronicle secrets redact ID...|--all` (or `secrets allow ID`); "
                "`chronicle push --include-secrets` sends them as they are. Nothing was pushed")
    log.seal()
    local = _lines(log.storage.read_commits())
    done = Pushed(name, me.id, remote_lines=len(there))
    if local[: len(there)] != there:
        k = next(i for i, (a, b) in enumerate(zip(local, there)) if a != b) if len(there) <= len(local) else len(local)
        raise RemoteError(f"{target.where}: its MANIFEST differs from this log's at line {k + 1}; "
                          "another workspace pushed as this producer? Nothing was pushed")
    m = log.read_manifest()
    present = set(target.names())
    pending = list(enumerate(local[len(there):], start=len(there) + 1))
    # every file first, side by side (a file no line names yet is harmless, and sent again if killed);
    # a file a later redaction replaced is never sent: its copy goes with that redaction's line
    uploads = {f.name: (n, f) for n, line in pending for f in _files(line)
               if f.name not in present and f.name not in m.superseded}

    def upload(job: tuple[int, manifest.SegmentFile]) -> manifest.SegmentFile:
        n, f = job
        # checked against the MANIFEST first: damaged bytes are never sent
        target.put_bytes(f.name, log.segments.path(f, n).read_bytes())
        return f

    with ThreadPoolExecutor(max_workers=TRANSFERS) as pool:
        for f in pool.map(upload, uploads.values()):
            present.add(f.name)
            done.files += 1
            done.bytes += f.bytes
            if on_file:
                on_file(f.bytes, f.name)
    size = sum(map(len, there))
    for n, line in pending:  # then the lines, in order: each the commit point of the files it names
        target.commit(line, size)
        size += len(line)
        done.lines += 1
        if manifest.REDACTION_MARK in line:
            r = msgspec.json.decode(line, type=manifest.Redaction)
            gone = [rf.replaces for rf in r.files if rf.replaces in present]
            target.remove(gone)
            present -= set(gone)
            done.removed += len(gone)
    record_push(data_dir, name, head=_sealed_head(local), lines=len(local))
    return done


class PushState(msgspec.Struct):
    #: The last seq and MANIFEST line the remote holds from this log (as of the last push that worked).
    head: int = 0
    lines: int = 0
    at: str | None = None
    #: Why the last push did not work (None when it did).
    error: str | None = None
    error_at: str | None = None


def push_state(data_dir: Path, name: str) -> PushState:
    try:
        return msgspec.json.decode((data_dir / "remotes" / name / "pushed.json").read_bytes(), type=PushState)
    except (FileNotFoundError, msgspec.DecodeError):
        return PushState()


def record_push(data_dir: Path, name: str, *, head: int | None = None, lines: int | None = None,
                error: str | None = None) -> None:
    """Note a push that worked (``head``, ``lines``) or why one did not (``error``)."""
    state = push_state(data_dir, name)
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    if error is None:
        state = PushState(head=head or 0, lines=lines or 0, at=now)
    else:
        state.error, state.error_at = error, now
    path = data_dir / "remotes" / name / "pushed.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_durably(path, msgspec.json.encode(state))


def _sealed_head(lines: list[bytes]) -> int:
    """The last seq the remote holds (its last segment entry's)."""
    for line in reversed(lines):
        if manifest.REDACTION_MARK not in line:
            return msgspec.json.decode(line, type=manifest.ManifestEntry).last_seq
    return 0


def secrets_pending(log, data_dir: Path, after: int) -> int:
    """Findings in events past seq ``after`` that were neither redacted nor allowed (what is new
    is scanned first)."""
    import polars as pl

    from chronicle.secrets.scan import scan

    scan(log, data_dir)
    snap = log.snapshot()
    if "secret.found" not in snap.types():
        return 0
    found = snap.frame("secret.found", ["finding_id", "target_seq"]).filter(pl.col("target_seq") > after).collect()
    allowed = set(snap.frame("secret.allowed", ["finding_id"]).collect()["finding_id"].to_list()
                  if "secret.allowed" in snap.types() else [])
    redacted = {f for r in snap.redactions for f in r.findings}
    return len(set(found["finding_id"].to_list()) - allowed - redacted)


# ------------------------------------------------------------------ pull


@dataclass
class PulledProducer:
    producer: str
    lines: int = 0
    files: int = 0
    bytes: int = 0
    removed: int = 0
    #: Why the pull stopped short of the remote's last line (a push under way), if it did.
    waiting: str | None = None


@dataclass
class Pulled:
    remote: str
    producers: list[PulledProducer] = field(default_factory=list)


def mirror_dir(data_dir: Path, name: str, pid: str) -> Path:
    return data_dir / "remotes" / name / pid


def mirrors(data_dir: Path) -> list[tuple[str, str, Path]]:
    """(remote, producer, folder) of every pulled mirror."""
    root = data_dir / "remotes"
    if not root.is_dir():
        return []
    return [(r.name, p.name, p) for r in sorted(root.iterdir()) if r.is_dir()
            for p in sorted(r.iterdir()) if (p / "MANIFEST").is_file()]


def producer_ids(config: RemoteConfig) -> list[str]:
    import obstore

    store = _store(config)
    try:
        listed = obstore.list_with_delimiter(store, prefix="producers/")
    except Exception as exc:
        raise remote_error(f"listing {config.url}/producers/", exc) from None
    return sorted(p.rstrip("/").rsplit("/", 1)[-1] for p in listed["common_prefixes"])


def pull(data_dir: Path, name: str | None = None, on_file=None) -> Pulled:
    name, config = remote(data_dir, name)
    me = producer(data_dir)
    done = Pulled(name)
    for pid in producer_ids(config):
        if pid != me.id:
            done.producers.append(_pull_one(data_dir, name, config, pid, on_file))
    return done


def _pull_one(data_dir: Path, name: str, config: RemoteConfig, pid: str, on_file) -> PulledProducer:
    from chronicle.store import EventLog

    source = _storage(data_dir, name, config, pid)
    remote_bytes = source.read_commits()
    where = f"{source.where}/manifest"
    try:
        manifest.parse(Path(where), remote_bytes)  # the whole chain checks out before anything is written
    except CorruptionError as exc:
        raise RemoteError(f"producer {pid}: {exc.path}: {exc.reason}; its mirror is kept as it was") from None
    folder = mirror_dir(data_dir, name, pid)
    if not (folder / "MANIFEST").is_file():
        EventLog.init(folder).close()
    mirror_bytes = (folder / "MANIFEST").read_bytes()
    if not remote_bytes.startswith(mirror_bytes):
        raise RemoteError(f"producer {pid}: the remote's MANIFEST ({where}) no longer begins with the lines pulled "
                          "before (history rewritten?); its mirror is kept as it was")
    lines = _lines(remote_bytes)
    have = len(_lines(mirror_bytes))
    got = PulledProducer(pid)
    on_remote = set(source.names())
    cut = len(lines)
    while cut > have:
        m = manifest.parse(Path(where), b"".join(lines[:cut]))
        missing = [f for e in m.entries for f in e.files
                   if f.name not in on_remote and not (folder / "segments" / f.name).exists()]
        if not missing:
            break
        first = next(n for n, line in enumerate(lines[:cut], start=1) if any(f.name == missing[0].name for f in _files(line)))
        got.waiting = f"{source.where}/segments/{missing[0].name} (named by MANIFEST line {first}) is missing"
        cut = first - 1
    if cut <= have:
        return got
    m = manifest.parse(Path(where), b"".join(lines[:cut]))
    segments = folder / "segments"
    wanted = [f for entry in m.entries for f in entry.files if not (segments / f.name).exists()]

    def download(f: manifest.SegmentFile) -> manifest.SegmentFile:
        _download_checked(source, f, segments / f.name)
        return f

    with ThreadPoolExecutor(max_workers=TRANSFERS) as pool:
        for f in pool.map(download, wanted):
            got.files += 1
            got.bytes += f.bytes
            if on_file:
                on_file(f.bytes, f.name)
    fsync_dir(segments)
    with open(folder / "MANIFEST", "ab") as fh:  # the commit point: the files it names are in place
        fh.write(b"".join(lines[have:cut]))
        fh.flush()
        os.fsync(fh.fileno())
    got.lines = cut - have
    gone = [n for n in m.superseded if (segments / n).exists()]
    for n in gone:
        (segments / n).unlink()
    got.removed = len(gone)
    return got


def _download_checked(source: ObjectStorage, f: manifest.SegmentFile, target: Path) -> None:
    """Fetch one file into place, refusing bytes other than its line records."""
    data = source.get_bytes(f.name)
    if len(data) != f.bytes or hashlib.sha256(data).hexdigest() != f.sha256:
        raise RemoteError(f"{source.where}/segments/{f.name}: its bytes differ from the sha256 its MANIFEST line "
                          "records (altered on the remote?); nothing of it was pulled")
    tmp = target.with_name(target.name + ".tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, target)
