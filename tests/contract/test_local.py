"""The local backend (a log folder on this machine's filesystem) passes the contracts."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from chronicle.store import EventLog
from chronicle.store.storage import LocalStorage

sys.path.insert(0, str(Path(__file__).parent))  # the contract suites beside this file

from log_contract import EventLogContract  # noqa: E402
from storage_contract import StorageContract  # noqa: E402


class TestLocalStorage(StorageContract):
    @pytest.fixture
    def storage(self, tmp_path: Path) -> LocalStorage:
        (tmp_path / "segments").mkdir()
        (tmp_path / "MANIFEST").write_bytes(b"")
        s = LocalStorage(tmp_path)
        yield s
        s.close()

    @pytest.fixture
    def reopen(self, storage: LocalStorage):
        return lambda: LocalStorage(storage.root)

    def tear(self, storage: LocalStorage, data: bytes) -> None:
        with open(storage.commits_path, "ab") as fh:  # an append cut short by a crash
            fh.write(data)


class TestLocalEventLog(EventLogContract):
    @pytest.fixture
    def open_log(self, tmp_path: Path):
        EventLog.init(tmp_path / "log").close()
        opened: list[EventLog] = []

        def open_one() -> EventLog:
            opened.append(EventLog(tmp_path / "log"))
            return opened[-1]

        yield open_one
        for log in opened:
            log.close()


class _Blind(LocalStorage):
    """A backend that appends without comparing: what the contract must catch."""

    def commit(self, line: bytes, expected_size: int) -> None:
        super().commit(line, self.read_commits().rfind(b"\n") + 1)


def test_the_contract_fails_a_backend_that_does_not_compare_before_it_appends(tmp_path: Path) -> None:
    (tmp_path / "segments").mkdir()
    blind = _Blind(tmp_path)
    case = TestLocalStorage()
    with pytest.raises(pytest.fail.Exception, match="DID NOT RAISE"):
        case.test_a_commit_made_against_a_stale_size_is_refused_and_changes_nothing(blind, lambda: _Blind(tmp_path))
