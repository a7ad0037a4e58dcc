"""Torn tails, damaged frames, tampered segments and MANIFEST, checkpoints."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from chronicle.store import CorruptionError, EventLog
from chronicle.store.framing import encode_frame, scan
from chronicle.store.integrity import checkpoint, verify

from conftest import envelope, note


def _active_wal(log: EventLog) -> Path:
    return sorted(log.wal_dir.glob("*.wal"))[-1]


def _frames_end(wal: Path) -> int:
    """Where the active file's frames end (its preallocated zeros follow)."""
    return scan(wal.read_bytes()).end


def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x5A
    path.write_bytes(bytes(data))


def test_torn_tail_is_cut_off_by_the_next_append(log: EventLog) -> None:
    log.append([note(i) for i in range(3)])
    wal = _active_wal(log)
    good = _frames_end(wal)
    with open(wal, "r+b") as fh:  # a frame cut short, as a killed writer leaves it
        fh.seek(good)
        fh.write(encode_frame(b"x" * 100)[:37])
    report = verify(log)
    assert report.ok and "torn tail" in report.problems[0].reason
    assert report.problems[0].start == good
    other = EventLog(log.path)  # another process's view
    assert other.append([note(3)])[0].seq == 4
    assert _frames_end(wal) > good
    assert verify(other).problems == []
    assert envelope(other)["seq"].to_list() == [1, 2, 3, 4]


def test_a_torn_batch_is_lost_whole_never_a_prefix(log: EventLog) -> None:
    log.append([note(0)])
    wal = _active_wal(log)
    before = _frames_end(wal)
    marks = {name: (log.path / name).read_bytes() for name in ("WRITTEN", "SYNCED")}
    log.append([note(i) for i in range(1, 50)])
    after = _frames_end(wal)
    half = before + (after - before) // 2
    with open(wal, "r+b") as fh:  # the batch's write was cut short before it was acknowledged
        fh.seek(half)
        fh.write(bytes(after - half))
    for name, data in marks.items():  # so its writer never moved a mark (it died mid-write)
        (log.path / name).write_bytes(data)
    assert envelope(log)["seq"].to_list() == [1]
    other = EventLog(log.path)  # the writer died; the next process carries on
    assert other.append([note(99)])[0].seq == 2
    assert verify(other).problems == []


def test_damaged_frame_followed_by_intact_frames_is_corruption(log: EventLog) -> None:
    for i in range(3):  # one frame per appended batch
        log.append([note(i)])
    wal = _active_wal(log)
    size = wal.stat().st_size
    end = _frames_end(wal)
    _flip(wal, end // 3 + 20)  # inside the first or second frame, not the last
    report = verify(log)
    assert not report.ok
    problem = report.problems[0]
    assert problem.path == str(wal) and "followed by intact frames" in problem.reason
    assert problem.start is not None and problem.start < end
    with pytest.raises(CorruptionError, match="followed by intact frames"):
        EventLog(log.path).append([note(9)])
    assert wal.stat().st_size == size, "corruption must never be truncated away"


def test_flipped_byte_in_a_segment_is_located(log: EventLog) -> None:
    log.append([note(i, value="v" * 2000) for i in range(50)])
    entry = log.seal()[0]
    seg = log.segment_dir / entry.files[0].name
    _flip(seg, 1234)
    report = verify(log)
    assert not report.ok
    p = report.problems[0]
    assert p.path == str(seg) and p.start is not None and p.start <= 1234 < p.end  # type: ignore[operator]


def test_flipped_byte_in_the_manifest_is_located(log: EventLog) -> None:
    for batch in range(3):
        log.append([note(batch * 10 + i) for i in range(10)])
        log.seal()
    manifest = log.manifest_path
    lines = manifest.read_bytes().split(b"\n")
    offset = len(lines[0]) + 1 + 40  # inside the second entry
    _flip(manifest, offset)
    report = verify(log)
    assert not report.ok
    p = report.problems[0]
    assert p.path == str(manifest) and p.start <= offset < p.end  # type: ignore[operator]
    assert "line 2" in p.reason


def test_rewritten_event_with_rehashed_file_is_still_caught(log: EventLog) -> None:
    """Someone edits a segment and fixes up the file hash: the content hash and Merkle root still disagree."""
    import hashlib

    import msgspec
    import pyarrow as pa
    import pyarrow.parquet as pq

    from chronicle.store import manifest as mf

    log.append([note(i) for i in range(5)])
    entry = log.seal()[0]
    seg = log.segment_dir / entry.files[0].name
    table = pq.read_table(seg)
    values = table.column("value").to_pylist()
    values[2] = "forged"
    table = table.set_column(table.schema.get_field_index("value"), "value", pa.array(values, pa.large_string()))
    pq.write_table(table, seg, compression="zstd")
    data = seg.read_bytes()
    f = msgspec.structs.replace(entry.files[0], bytes=len(data), sha256=hashlib.sha256(data).hexdigest(),
                                block_sha256=[hashlib.sha256(data).hexdigest()])
    forged = mf.seal_entry(msgspec.structs.replace(entry, files=[f], hash=""))
    log.manifest_path.write_bytes(msgspec.json.Encoder(order="sorted").encode(forged) + b"\n")
    report = verify(log)
    assert not report.ok and "seq 3" in report.problems[0].reason


def test_checkpoint_is_reproved_after_the_log_grows_and_is_sealed(log: EventLog) -> None:
    log.append([note(i) for i in range(7)])
    cp = checkpoint(log)
    assert cp.seq == 7
    log.append([note(i) for i in range(7, 20)])
    log.seal()
    log.append([note(20)])
    report = verify(log, at_seq=cp.seq)
    assert report.ok and report.hash_at == cp.head_hash
    assert report.head_hash == checkpoint(log).head_hash


def test_unterminated_manifest_line_is_an_uncommitted_seal(log: EventLog) -> None:
    log.append([note(i) for i in range(4)])
    log.seal()
    with open(log.manifest_path, "ab") as fh:
        fh.write(b'{"n": 2, "first_seq": 5')
    assert verify(log).ok
    log.append([note(4)])
    log.seal()
    assert verify(log).problems == []
    assert envelope(log)["seq"].to_list() == [1, 2, 3, 4, 5]


def test_the_active_wal_is_zero_filled_ahead_and_rotation_cuts_the_zeros(log: EventLog) -> None:
    log.append([note(i) for i in range(3)])
    wal = _active_wal(log)
    end = _frames_end(wal)
    assert wal.stat().st_size > end and not wal.read_bytes()[end:].strip(b"\0")
    assert log.wal_bytes() == end, "seal thresholds count frames, not preallocated zeros"
    other = EventLog(log.path)  # another process's view starts from a full scan
    assert other.append([note(3)])[0].seq == 4
    assert log.append([note(4)])[0].seq == 5  # and the first catches up past the other's frame
    log.seal()
    assert envelope(log)["seq"].to_list() == [1, 2, 3, 4, 5]
    assert verify(log).problems == []


def test_a_frame_past_the_written_mark_is_kept(log: EventLog) -> None:
    """A writer that died after writing its frame but before moving the WRITTEN
    mark left a whole, valid frame: the next append must go after it, not over it."""
    from chronicle.store import batch

    log.append([note(0)])
    wal = _active_wal(log)
    end = _frames_end(wal)
    frame = encode_frame(batch.payload(2, 0, batch.encode_events([note(1)], {type(note(1))})))
    with open(wal, "r+b") as fh:
        fh.seek(end)
        fh.write(frame)
    assert log.append([note(2)])[0].seq == 3
    assert _frames_end(wal) > end + len(frame)
    assert envelope(log)["seq"].to_list() == [1, 2, 3]
    assert verify(log).problems == []


def test_a_damaged_written_mark_only_costs_a_rescan(log: EventLog) -> None:
    log.append([note(0)])
    other = EventLog(log.path)
    other.append([note(1)])
    (log.path / "WRITTEN").write_bytes(b"garbage")
    (log.path / "SYNCED").write_bytes(b"")
    assert log.append([note(2)])[0].seq == 3
    assert other.append([note(3)])[0].seq == 4
    assert envelope(log)["seq"].to_list() == [1, 2, 3, 4]


def test_a_writer_sees_seals_made_into_a_manifest_replaced_under_it(log: EventLog) -> None:
    """Writers watch MANIFEST through a descriptor they keep open; a file put
    in its place from outside (a restore, an editor's save) is opened afresh,
    or a writer would miss what is sealed into it and reuse seqs."""
    other = EventLog(log.path)
    log.append([note(0)])
    other.append([note(1)])
    copy = log.path / "MANIFEST.copy"
    copy.write_bytes((log.path / "MANIFEST").read_bytes())
    os.replace(copy, log.path / "MANIFEST")
    other.seal()  # events 1 and 2, committed into the new file
    assert log.append([note(2)])[0].seq == 3
    assert envelope(log)["seq"].to_list() == [1, 2, 3]
    assert verify(log).problems == []


def test_a_writer_follows_a_rotation_made_by_another(log: EventLog) -> None:
    other = EventLog(log.path)
    other.append([note(0)])
    log.append([note(1)])
    first = _active_wal(log)
    log.seal()  # rotates: the file `other` wrote to is sealed and deleted
    assert not first.exists()
    assert other.append([note(2)])[0].seq == 3
    log.seal()
    (log.path / "WRITTEN").write_bytes(b"")  # and with the mark gone, the listing still finds the file
    assert other.append([note(3)])[0].seq == 4
    assert log.append([note(4)])[0].seq == 5
    assert envelope(log)["seq"].to_list() == [1, 2, 3, 4, 5]
    assert verify(log).problems == []


def test_a_synced_mark_covers_only_writes_of_its_own_epoch(log: EventLog, monkeypatch) -> None:
    """A writer below the SYNCED mark skips its fdatasync; a mark left from
    before a cut (another epoch) must not let a write into the cut range skip it."""
    from chronicle.store.marks import Mark, MarkFile

    syncs = []
    real = os.fdatasync
    monkeypatch.setattr(os, "fdatasync", lambda fd: (syncs.append(fd), real(fd)))
    log.append([note(0)])
    written = MarkFile(log.path / "WRITTEN").read()
    assert written is not None and written.head_seq == 1
    synced = MarkFile(log.path / "SYNCED")
    synced.write(Mark(written.wal, 1 << 30, written.epoch))  # as if a sync covered far ahead
    log.append([note(1)])
    assert len(syncs) == 1
    synced.write(Mark(written.wal, 1 << 30, written.epoch ^ 1))  # from before a cut
    log.append([note(2)])
    assert len(syncs) == 2
    assert envelope(log)["seq"].to_list() == [1, 2, 3]


def test_a_cut_starts_a_new_epoch(log: EventLog) -> None:
    from chronicle.store.marks import MarkFile

    log.append([note(0)])
    before = MarkFile(log.path / "WRITTEN").read()
    wal = _active_wal(log)
    with open(wal, "r+b") as fh:  # a torn frame past the last whole one
        fh.seek(_frames_end(wal))
        fh.write(encode_frame(b"x" * 100)[:37])
    other = EventLog(log.path)
    assert other.append([note(1)])[0].seq == 2
    after = MarkFile(log.path / "WRITTEN").read()
    assert before is not None and after is not None
    assert after.epoch != before.epoch and after.head_seq == 2


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="reads descriptors' targets from /proc")
def test_a_sync_in_flight_keeps_its_file_open_across_a_rotation_in_another_thread(log: EventLog, monkeypatch) -> None:
    """Thread A has written its frame and is about to fdatasync it (outside LOCK)
    when this thread seals (a rotation) and appends to the new file. A's
    descriptor must still name the file A wrote: closed, it could be reused for
    another file, and A would acknowledge an event it never made durable."""
    import threading

    log.append([note(0)])
    old_wal = _active_wal(log)
    real = os.fdatasync
    in_sync, go_on = threading.Event(), threading.Event()
    seen: list[str] = []
    a_thread: list[threading.Thread] = []

    def fdatasync(fd: int) -> None:
        if a_thread and threading.current_thread() is a_thread[0] and not seen:
            in_sync.set()
            go_on.wait(10)
            try:
                seen.append(os.readlink(f"/proc/self/fd/{fd}"))
            except OSError as exc:
                seen.append(f"error: {exc}")
        real(fd)

    monkeypatch.setattr(os, "fdatasync", fdatasync)
    errors: list[BaseException] = []

    def append_a() -> None:
        try:
            log.append([note(1)])
        except BaseException as exc:  # reported below, not lost in the thread
            errors.append(exc)

    a_thread.append(threading.Thread(target=append_a))
    a_thread[0].start()
    assert in_sync.wait(10)
    log.seal()
    log.append([note(2)])  # switches this process to the new WAL file
    spare = [os.open(os.devnull, os.O_RDONLY) for _ in range(4)]  # would take a freed descriptor number
    go_on.set()
    a_thread[0].join(10)
    for fd in spare:
        os.close(fd)
    assert not errors
    assert seen and seen[0].startswith(str(old_wal)), seen
    assert envelope(log)["event_id"].to_list() == ["e0", "e1", "e2"]
