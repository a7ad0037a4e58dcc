"""The storage contract: what every backend of a log's committed state promises.

A backend's test module subclasses ``StorageContract`` and provides two
fixtures: ``storage`` (a fresh, empty backend) and ``reopen`` (a function
giving a second handle on the same state, as another process would open it).
``tear(storage, data)`` leaves ``data`` after the committed bytes as an
append cut short would; a backend where that cannot happen skips it.

The promises (see ``chronicle.store.storage``):
1. the commit log is compare-and-append: a commit lands only on the size it
   was made against, whole, durable, in order; racing writers each land once;
2. bytes past the last newline were never committed, and the next commit
   cuts them off;
3. blobs are put whole (a name's bytes are the file put), listed, readable
   through ``path``; a name not yet committed may be put again;
4. ``commits_stamp`` changes when a commit lands;
5. ``remove`` deletes blobs for good (a redaction's replaced files), and
   removing one again, or one never put, is no error.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from chronicle.store.storage import CommitConflict, Storage


def _line(i: int) -> bytes:
    return b'{"n":%d,"pad":"%s"}\n' % (i, b"x" * (i % 7))


class StorageContract:
    @pytest.fixture
    def storage(self, tmp_path: Path) -> Storage:
        raise NotImplementedError

    @pytest.fixture
    def reopen(self, storage: Storage):
        raise NotImplementedError

    def tear(self, storage: Storage, data: bytes) -> None:
        pytest.skip("this backend cannot leave a torn commit")

    # ------------------------------------------------------------ commits

    def test_a_fresh_backend_has_no_commits_and_no_blobs(self, storage: Storage) -> None:
        assert storage.read_commits() == b"" and storage.names() == []

    def test_commits_land_in_order_on_the_size_they_were_made_against(self, storage: Storage, reopen) -> None:
        size = 0
        for i in range(5):
            storage.commit(_line(i), size)
            size += len(_line(i))
        assert storage.read_commits() == b"".join(_line(i) for i in range(5))
        assert reopen().read_commits() == storage.read_commits()  # another handle sees them

    def test_a_commit_made_against_a_stale_size_is_refused_and_changes_nothing(self, storage: Storage, reopen) -> None:
        storage.commit(_line(0), 0)
        other = reopen()
        other.commit(_line(1), len(_line(0)))
        before = storage.read_commits()
        with pytest.raises(CommitConflict) as caught:
            storage.commit(_line(2), len(_line(0)))  # made before the other's commit landed
        assert caught.value.expected == len(_line(0)) and caught.value.actual == len(before)
        assert storage.read_commits() == before

    def test_a_commit_is_exactly_one_line(self, storage: Storage) -> None:
        for bad in (b'{"no":"newline"}', b'{"a":1}\n{"b":2}\n', b""):
            with pytest.raises(ValueError):
                storage.commit(bad, 0)
        assert storage.read_commits() == b""

    def test_racing_writers_each_land_every_commit_once_and_whole(self, storage: Storage, reopen) -> None:
        writers, each = 6, 15
        start = threading.Barrier(writers)
        conflicts = []

        def writer(w: int) -> None:
            handle = reopen()
            start.wait()
            for k in range(each):
                line = b'{"writer":%d,"k":%d}\n' % (w, k)
                while True:
                    data = handle.read_commits()
                    try:
                        handle.commit(line, data.rfind(b"\n") + 1)
                        break
                    except CommitConflict:
                        conflicts.append(w)

        threads = [threading.Thread(target=writer, args=(w,)) for w in range(writers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        lines = storage.read_commits().splitlines()
        assert sorted(lines) == sorted(b'{"writer":%d,"k":%d}' % (w, k) for w in range(writers) for k in range(each))
        for w in range(writers):  # each writer's commits in its own order
            mine = [line for line in lines if line.startswith(b'{"writer":%d,' % w)]
            assert mine == [b'{"writer":%d,"k":%d}' % (w, k) for k in range(each)]

    def test_a_torn_commit_was_never_committed_and_the_next_commit_cuts_it(self, storage: Storage) -> None:
        storage.commit(_line(0), 0)
        self.tear(storage, b'{"half a l')
        assert storage.read_commits().rfind(b"\n") + 1 == len(_line(0))  # readers count only whole lines
        storage.commit(_line(1), len(_line(0)))
        assert storage.read_commits() == _line(0) + _line(1)

    def test_the_stamp_changes_when_a_commit_lands(self, storage: Storage) -> None:
        before = storage.commits_stamp()
        storage.commit(_line(0), 0)
        assert storage.commits_stamp() != before

    # -------------------------------------------------------------- blobs

    def _staged(self, storage: Storage, name: str, data: bytes) -> Path:
        path = storage.staging_dir / (name + ".tmp")
        path.write_bytes(data)
        return path

    def test_blobs_are_put_whole_listed_and_read_back(self, storage: Storage, reopen) -> None:
        blobs = {f"seg-{i}.parquet": bytes([i]) * (1000 * i + 1) for i in range(3)}
        storage.put({name: self._staged(storage, name, data) for name, data in blobs.items()})
        other = reopen()
        assert other.names() == sorted(blobs)
        for name, data in blobs.items():
            assert other.path(name).read_bytes() == data

    def test_staged_files_are_not_blobs_until_put(self, storage: Storage) -> None:
        self._staged(storage, "seg-9.parquet", b"half written")
        assert storage.names() == []

    def test_a_blob_no_commit_names_yet_may_be_put_again(self, storage: Storage) -> None:
        storage.put({"seg-1.parquet": self._staged(storage, "seg-1.parquet", b"first attempt")})
        storage.put({"seg-1.parquet": self._staged(storage, "seg-1.parquet", b"second attempt, after a crash")})
        assert storage.path("seg-1.parquet").read_bytes() == b"second attempt, after a crash"
        assert storage.names() == ["seg-1.parquet"]

    def test_a_blob_name_is_one_path_component(self, storage: Storage) -> None:
        for bad in ("../escape", "a/b", "", ".."):
            with pytest.raises(ValueError):
                storage.path(bad)

    def test_removed_blobs_are_gone_for_every_handle_and_removing_again_is_no_error(self, storage: Storage, reopen) -> None:
        for name in ("seg-1.parquet", "seg-2.parquet"):
            storage.put({name: self._staged(storage, name, name.encode())})
        storage.remove(["seg-1.parquet"])
        other = reopen()
        assert other.names() == ["seg-2.parquet"] and storage.names() == ["seg-2.parquet"]
        other.remove(["seg-1.parquet", "seg-never.parquet"])  # a removal cut short runs again
        assert storage.path("seg-2.parquet").read_bytes() == b"seg-2.parquet"
