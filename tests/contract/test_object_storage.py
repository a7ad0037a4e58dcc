"""The S3 backend (obstore, against a real S3 API served by moto on 127.0.0.1) passes the
storage contract; and a log whose committed state lives there passes the log's."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from chronicle.store import EventLog
from chronicle.store.object_storage import ObjectStorage, s3_store

sys.path.insert(0, str(Path(__file__).parent))  # the contract suites beside this file
sys.path.insert(0, str(Path(__file__).parent.parent))

from log_contract import EventLogContract  # noqa: E402
from s3_server import CREDENTIALS, moto_server, new_bucket  # noqa: E402
from storage_contract import StorageContract  # noqa: E402


@pytest.fixture(scope="module")
def endpoint():
    with pytest.MonkeyPatch.context() as mp:
        for k, v in CREDENTIALS.items():
            mp.setenv(k, v)
        with moto_server() as url:
            mp.setenv("AWS_ENDPOINT_URL", url)
            yield url


class TestObjectStorage(StorageContract):
    @pytest.fixture
    def storage(self, endpoint: str, tmp_path: Path) -> ObjectStorage:
        url = f"s3://{new_bucket(endpoint)}/team/log"
        self.url = url
        return ObjectStorage(s3_store(url), tmp_path / "cache-0", where=url)

    @pytest.fixture
    def reopen(self, storage: ObjectStorage, tmp_path: Path):
        count = iter(range(1, 1000))
        return lambda: ObjectStorage(s3_store(storage.where), tmp_path / f"cache-{next(count)}", where=storage.where)


class TestObjectStorageEventLog(EventLogContract):
    """Writers on this machine (WAL, locks: local), the commits and segments on S3."""

    @pytest.fixture
    def open_log(self, endpoint: str, tmp_path: Path):
        url = f"s3://{new_bucket(endpoint)}/log"
        EventLog.init(tmp_path / "log").close()
        opened: list[EventLog] = []

        def open_one() -> EventLog:
            storage = ObjectStorage(s3_store(url), tmp_path / f"cache-{len(opened)}", where=url)
            opened.append(EventLog(tmp_path / "log", storage))
            return opened[-1]

        yield open_one
        for log in opened:
            log.close()
