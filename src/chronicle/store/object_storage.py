"""A log's committed state on S3-compatible object storage (``Storage``, see ``storage``).

Layout under the store's prefix::

    manifest/000000000001.json   one object per commit: the MANIFEST line, whole
    segments/<name>              the blobs

The commit log is compare-and-append as the contract asks: commit N+1 lands
only if the log holds exactly the bytes it was made against, and the object is
written with ``If-None-Match: *`` (put-if-absent), so of two writers racing for
the same next commit one wins and the other gets ``CommitConflict``, with no
lock service (as delta-rs commits to S3 since S3 has conditional writes). An
object is written whole or not at all, so no commit is ever torn. A blob is
put in one request and checked against the MD5 the store computed of what it
received (its ETag), so a blob the store names is the file's bytes. ``path``
downloads a blob into a local cache (blobs never change once a commit names
them; a redaction puts new ones).

Why obstore: one small wheel (Rust's ``object_store``, which delta-rs uses)
that speaks S3's conditional writes (``mode="create"``), reads the standard
AWS environment (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
``AWS_SESSION_TOKEN``, ``AWS_REGION``, ``AWS_ENDPOINT_URL``) and streams
files; ``pyarrow.fs`` has no conditional put, and ``s3fs`` would bring
aiobotocore and its pinned botocore. Credentials stay in the environment:
nothing here writes them anywhere.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, NamedTuple

from chronicle.store.errors import StoreError
from chronicle.store.storage import CommitConflict

COMMITS = "manifest/"
BLOBS = "segments/"
#: S3's limit for one PUT; a blob past it would need a multipart upload, whose ETag is no MD5.
_ONE_PUT = 5 << 30


class RemoteError(StoreError):
    """The object store refused or could not be reached; names the object and what it said."""


def remote_error(where: str, exc: BaseException) -> RemoteError:
    """A clear error from an obstore exception: what failed, on which object, and the likely cause."""
    full = str(exc)
    if "NoSuchBucket" in full:
        cause = "the bucket does not exist"
    elif "169.254.169.254" in full:  # no keys in the environment: the client asked the instance metadata service
        cause = "no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN if any)"
    elif any(code in full for code in ("ExpiredToken", "InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied",
                                       "403 Forbidden", "InvalidToken")):
        cause = "access denied: check the AWS credentials in the environment (expired or wrong?)"
    elif "error sending request" in full or "Connection refused" in full or "timed out" in full:
        cause = "the object store cannot be reached (after retries)"
    elif type(exc).__name__ == "FileNotFoundError" or "NoSuchKey" in full:
        cause = "no such object"
    else:
        cause = full.split("\n", 1)[0][:300]
    return RemoteError(f"{where}: {cause}")


class ObjectStorage:
    """The ``Storage`` of one log under a prefix of an object store (an obstore store)."""

    def __init__(self, store: Any, cache_dir: Path, *, where: str = ""):
        self.store = store
        #: How errors name the store (``s3://bucket/prefix``).
        self.where = where or repr(store)
        self.cache_dir = Path(cache_dir)
        self.staging_dir = self.cache_dir / "staging"
        self.staging_dir.mkdir(parents=True, exist_ok=True)
        self._commits: list[bytes] = []  # committed lines read so far, in order (never change)

    def close(self) -> None:
        pass

    def _call(self, what: str, key: str, fn, *args, **kwargs):
        try:
            return fn(self.store, *args, **kwargs)
        except Exception as exc:  # obstore's errors: each becomes one message naming the object
            if type(exc).__name__ == "AlreadyExistsError":
                raise
            raise remote_error(f"{what} {self.where}/{key}", exc) from None

    def _list(self, prefix: str) -> list[str]:
        """Every object's path under ``prefix`` (read whole here: a listing fails as it is read)."""
        import obstore

        return self._call("listing", prefix, lambda store: [o["path"] for batch in obstore.list(store, prefix=prefix)
                                                            for o in batch])

    # ----------------------------------------------------------- commits

    def _commit_names(self) -> list[str]:
        return sorted(n for n in self._list(COMMITS) if n.endswith(".json"))

    def read_commits(self) -> bytes:
        import obstore

        names = self._commit_names()
        for i, name in enumerate(names[len(self._commits):], start=len(self._commits) + 1):
            if name != _commit_name(i):
                raise StoreError(f"{self.where}/{name}: commit objects are not numbered 1..N (expected {_commit_name(i)})")
            self._commits.append(bytes(self._call("reading", name, obstore.get, name).bytes()))
        return b"".join(self._commits)

    def commits_stamp(self) -> tuple[int, int]:
        names = self._commit_names()
        return len(names), sum(map(len, self._commits[: len(names)]))

    def commit(self, line: bytes, expected_size: int) -> None:
        import obstore

        if not line.endswith(b"\n") or b"\n" in line[:-1]:
            raise ValueError("a commit is one line ending in a newline")
        # The lines read so far are enough to commit after them: if others committed since,
        # the object this commit needs exists already and the conditional put refuses it.
        size = sum(map(len, self._commits))
        if size != expected_size:
            size = len(self.read_commits())
            if size != expected_size:
                raise CommitConflict(expected_size, size)
        name = _commit_name(len(self._commits) + 1)
        try:
            self._call("committing", name, obstore.put, name, line, mode="create")
        except Exception as exc:
            if type(exc).__name__ != "AlreadyExistsError":
                raise
            raise CommitConflict(expected_size, len(self.read_commits())) from None
        self._commits.append(line)

    # ------------------------------------------------------------- blobs

    def put(self, blobs: dict[str, Path]) -> None:
        for name, source in blobs.items():
            self.put_file(name, source)
            Path(source).unlink()  # moved, as the contract says

    def put_file(self, name: str, source: Path) -> None:
        """Upload one file as blob ``name`` (see ``put_bytes``); the file stays."""
        size = os.path.getsize(source)
        if size > _ONE_PUT:
            raise StoreError(f"{source}: {size:,} bytes, more than one upload takes ({_ONE_PUT:,})")
        self.put_bytes(name, Path(source).read_bytes())

    def put_bytes(self, name: str, data: bytes) -> None:
        """Upload blob ``name`` in one PUT and check the store received these bytes (its ETag is
        the MD5 of one PUT's body)."""
        import obstore

        key = BLOBS + _checked(name)
        done = self._call("uploading", key, obstore.put, key, data, use_multipart=False)
        digest = hashlib.md5(data).hexdigest()
        if (done.get("e_tag") or "").strip('"') != digest:
            raise RemoteError(f"uploading {self.where}/{key}: the store holds other bytes than were sent "
                              f"(MD5 {done.get('e_tag')} != {digest})")

    def get_bytes(self, name: str) -> bytes:
        import obstore

        key = BLOBS + _checked(name)
        return bytes(self._call("downloading", key, obstore.get, key).bytes())

    def path(self, name: str) -> Path:
        import obstore

        local = self.cache_dir / "blobs" / _checked(name)
        if not local.exists():
            local.parent.mkdir(parents=True, exist_ok=True)
            tmp = local.with_name(local.name + f".{os.getpid()}.tmp")
            got = self._call("downloading", BLOBS + name, obstore.get, BLOBS + name)
            with open(tmp, "wb") as fh:
                for chunk in got:
                    fh.write(chunk)
            os.replace(tmp, local)
        return local

    def names(self) -> list[str]:
        return sorted(path[len(BLOBS):] for path in self._list(BLOBS))

    def remove(self, names: list[str]) -> None:
        import obstore

        for name in names:
            self._call("removing", BLOBS + name, obstore.delete, BLOBS + _checked(name))
            (self.cache_dir / "blobs" / name).unlink(missing_ok=True)


def _commit_name(n: int) -> str:
    return f"{COMMITS}{n:012d}.json"


def _checked(name: str) -> str:
    if "/" in name or name in ("", ".", ".."):
        raise ValueError(f"{name!r} is not a blob name")
    return name


def _profile_credentials() -> Any:
    """Credentials of the profile ``AWS_PROFILE`` names (``~/.aws/credentials``, ``~/.aws/config``),
    read by boto3 as the AWS tools read them."""
    try:
        import boto3
        from obstore.auth.boto3 import Boto3CredentialProvider
    except ImportError:
        raise StoreError("AWS_PROFILE is set: reading a profile needs boto3 (pip install boto3); or set "
                         "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY") from None
    try:
        return Boto3CredentialProvider(boto3.Session(profile_name=os.environ["AWS_PROFILE"]))
    except Exception as exc:  # botocore's ProfileNotFound and kin
        raise StoreError(f"AWS_PROFILE={os.environ['AWS_PROFILE']!r}: {exc}") from None


class S3Settings(NamedTuple):
    """Where an S3-compatible store is, beyond what the AWS environment says for itself."""

    endpoint: str | None
    allow_http: bool
    #: None when the environment names a region
    region: str | None


def s3_settings(endpoint: str | None = None) -> S3Settings:
    """``endpoint`` (else ``AWS_ENDPOINT_URL``), plain HTTP for an http:// one, and us-east-1 when
    the environment names no region (what S3-compatible stores expect)."""
    endpoint = endpoint or os.environ.get("AWS_ENDPOINT_URL")
    region = None if (os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")) else "us-east-1"
    return S3Settings(endpoint, bool(endpoint and endpoint.startswith("http://")), region)


def s3_store(url: str, endpoint: str | None = None) -> Any:
    """An obstore S3 store for ``s3://bucket[/prefix]``: credentials, region and endpoint from the
    standard AWS environment (``endpoint`` overrides ``AWS_ENDPOINT_URL``), or the profile
    ``AWS_PROFILE`` names when no key is set."""
    from obstore.store import S3Store

    if not url.startswith("s3://") or len(url) <= 5:
        raise StoreError(f"{url!r} is not an s3://bucket[/prefix] URL")
    where = s3_settings(endpoint)
    options: dict[str, Any] = {"client_options": {"allow_http": True}} if where.allow_http else {}
    if where.endpoint:
        options["endpoint"] = where.endpoint
    if where.region:
        options["region"] = where.region
    if os.environ.get("AWS_PROFILE") and not os.environ.get("AWS_ACCESS_KEY_ID"):
        options["credential_provider"] = _profile_credentials()
    try:
        return S3Store.from_url(url, **options)
    except Exception as exc:
        raise remote_error(f"opening {url}", exc) from None
