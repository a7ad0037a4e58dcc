"""The log's contract: what append, seal, bulk load and snapshots promise."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timezone

import msgspec
import pyarrow as pa
import pytest

from chronicle.events import Annotation, AnnotationV1, SessionLine
from chronicle.store import Ack, ConflictingEvent, EventLog, InvalidEvent, NotAWorkspace

from conftest import envelope, note


def test_seqs_are_contiguous_from_one_across_batches_and_seals(log: EventLog) -> None:
    acks = log.append([note(i) for i in range(5)])
    log.seal()
    acks += log.append([note(i) for i in range(5, 12)])
    assert [a.seq for a in acks] == list(range(1, 13))
    assert envelope(log)["seq"].to_list() == list(range(1, 13))


def test_the_acks_of_an_all_new_batch_behave_as_the_list_they_stand_for(log: EventLog) -> None:
    """They are made on access (see FreshAcks), and are no less a list for it."""
    log.append([note(0)])
    acks = log.append([note(i) for i in range(1, 4)])
    expected = [Ack(2, "e1"), Ack(3, "e2"), Ack(4, "e3")]
    assert acks == expected and expected == acks and list(acks) == expected
    assert len(acks) == 3 and acks[0] == expected[0] and acks[-1] == expected[-1] and acks[1:] == expected[1:]
    assert acks != expected[:2] and acks != [*expected[:2], Ack(4, "e3", True)]
    with pytest.raises(IndexError):
        acks[3]
    more = acks
    more += log.append([note(4)])
    assert more == [*expected, Ack(5, "e4")]
    assert [Ack(1, "e0")] + acks == [Ack(1, "e0"), *expected]


def test_identical_event_id_is_a_noop_returning_the_first_seq(log: EventLog) -> None:
    log.append([note(i) for i in range(3)])
    log.seal()
    log.append([note(3)])
    again = log.append([note(1), note(3)])
    assert [(a.seq, a.duplicate) for a in again] == [(2, True), (4, True)]
    assert envelope(log).height == 4


def test_same_event_id_with_other_content_is_refused_and_nothing_is_written(log: EventLog) -> None:
    log.append([note(0)])
    with pytest.raises(ConflictingEvent, match="'e0' already exists at seq 1"):
        log.append([note(1), note(0, value="changed")])
    assert envelope(log)["event_id"].to_list() == ["e0"]
    log.seal()
    with pytest.raises(ConflictingEvent):
        log.append([note(0, value="changed again")])


def test_ids_other_writers_recorded_are_found_with_or_without_decoding_their_frames(log: EventLog, monkeypatch) -> None:
    """A writer indexes others' event_ids before it takes LOCK; under LOCK it
    only searches the frames written meanwhile for each id's encoded bytes."""
    mine, other = EventLog(log.path), EventLog(log.path)
    mine.append([note(0, event_id="a-0")])  # loads mine's id index
    other.append([note(1, event_id="w-10"), note(2, event_id="w-1x")])
    with monkeypatch.context() as m:  # as if other wrote while mine waited for LOCK
        m.setattr(mine.id_index, "prefetch", lambda ids: None)
        # "w-1" occurs inside both of other's ids, but not as an id of its own
        assert [(a.seq, a.duplicate) for a in mine.append([note(3, event_id="w-1")])] == [(4, False)]
        assert [(a.seq, a.duplicate) for a in mine.append([note(1, event_id="w-10")])] == [(2, True)]
        other.append([note(5, event_id="b-5")])
        with pytest.raises(ConflictingEvent, match="'b-5' already exists at seq 5"):
            mine.append([note(6, event_id="b-5")])
    other.append([note(7, event_id="b-7")])
    assert mine.append([note(7, event_id="b-7"), note(8, event_id="a-8")])[0].duplicate  # indexed before LOCK
    assert envelope(log)["event_id"].to_list() == ["a-0", "w-10", "w-1x", "w-1", "b-5", "b-7", "a-8"]


def test_ids_of_many_frames_and_of_batches_among_them_are_indexed_with_their_seqs(log: EventLog) -> None:
    """Others' frames are decoded for their ids in chunks (see batch.frame_ids): one
    frame per event here, more than a chunk, and a many-event batch between."""
    mine, other = EventLog(log.path), EventLog(log.path)
    mine.append([note(0, event_id="a-0")])  # loads mine's id index
    for i in range(1, 300):
        other.append([note(i, event_id=f"w-{i}")])
    other.append([note(i, event_id=f"w-{i}") for i in range(300, 310)])
    for i in range(310, 600):
        other.append([note(i, event_id=f"w-{i}")])
    again = [note(i, event_id=f"w-{i}") for i in (1, 255, 256, 257, 300, 309, 310, 599)]
    assert [(a.seq, a.duplicate) for a in mine.append(again)] == [
        (1 + i, True) for i in (1, 255, 256, 257, 300, 309, 310, 599)]
    assert envelope(log).height == 600


def test_a_writer_keeps_seqs_from_its_first_duplicate_on_and_keeps_them_current(log: EventLog) -> None:
    """A writer's id index holds only ids until it meets a duplicate (see
    EventIds); then it reads them again with their seqs, and every later
    append, its own or another's, sealed or not, bulk or not, adds its seqs."""
    mine, other = EventLog(log.path), EventLog(log.path)
    mine.append([note(0, event_id="a-0")])
    other.append([note(1, event_id="b-1")])
    log.seal()
    other.append([note(2, event_id="b-2")])
    assert mine.id_index.loaded and not mine.id_index.with_seqs
    assert [(a.seq, a.duplicate) for a in mine.append([note(2, event_id="b-2"), note(1, event_id="b-1")])] == [
        (3, True), (2, True)]
    assert mine.id_index.with_seqs
    mine.append([note(4, event_id="a-4")])  # seq 4
    other.append([note(5, event_id="b-5")])  # 5: found by mine's catch-up
    assert [(a.seq, a.duplicate) for a in mine.append([note(5, event_id="b-5"), note(4, event_id="a-4")])] == [
        (5, True), (4, True)]
    other.append_table("annotation", pa.table({"stream": ["doc:1"], "event_id": ["t-6"], "target": ["doc:1"],
                                               "key": ["k"], "value": ["6"], "author": ["test"]}))  # 6, a segment
    other.append([note(7, event_id="b-7")])  # 7
    again = [note(i, event_id=eid) for i, eid in ((7, "b-7"), (4, "a-4"), (5, "b-5"), (0, "a-0"), (1, "b-1"))]
    assert [(a.seq, a.duplicate) for a in mine.append(again)] == [(7, True), (4, True), (5, True), (1, True), (2, True)]
    assert mine.append([note(6, event_id="t-6")])[0] == (6, "t-6", True)
    assert envelope(log)["event_id"].to_list() == ["a-0", "b-1", "b-2", "a-4", "b-5", "t-6", "b-7"]


def test_a_writer_reads_the_log_for_its_id_index_before_it_takes_the_lock(log: EventLog) -> None:
    """Indexing a large log takes seconds, which every other writer would
    wait out under LOCK: a writer's first append indexes before taking it."""
    log.append([note(i) for i in range(3)])
    log.seal()
    log.append([note(3)])
    mine, holder = EventLog(log.path), EventLog(log.path)
    done: list = []
    with holder.locked():  # another writer holds LOCK throughout
        worker = threading.Thread(target=lambda: done.append(mine.append([note(1), note(9)])))
        worker.start()
        deadline = time.monotonic() + 10
        while not mine.id_index.with_seqs and time.monotonic() < deadline:
            time.sleep(0.01)
        assert mine.id_index.with_seqs  # e1 is recorded: built with seqs at once
        assert not mine.id_index.knows(["e9"]) and mine.id_index.knows(["e0"]) and mine.id_index.knows(["e3"])
        assert not done
    worker.join(10)
    assert [(a.seq, a.duplicate) for a in done[0]] == [(2, True), (5, False)]


def test_a_new_writer_asks_the_sealed_id_hashes_and_still_finds_every_duplicate(tmp_path, monkeypatch) -> None:
    """A writer that starts on a large sealed log bisects the IDS cache instead of
    reading every sealed id; a hit (a duplicate, or a collision) is checked against
    the ids themselves; a damaged cache, or one for other entries, is not trusted."""
    from chronicle.store.ids import ID_HASHES

    path = tmp_path / "log"
    with EventLog.init(path) as lg:
        lg.append([note(i) for i in range(2000)])
        lg.seal()
    with EventLog(path) as lg:  # the first writer after the seal writes the cache
        lg.append([note(5000)])
    cache = path / ID_HASHES
    assert cache.exists()

    import pyarrow.parquet as pq

    reads: list = []
    read_table = pq.read_table
    monkeypatch.setattr(pq, "read_table", lambda *a, **kw: reads.append(kw.get("columns")) or read_table(*a, **kw))
    with EventLog(path) as lg:
        assert not lg.append([note(6000)])[0].duplicate
    assert reads == [], "a new id is answered by the cache, not by reading the segments"
    with EventLog(path) as lg:
        ack = lg.append([note(7)])[0]  # sealed, same content: acknowledged at its first seq
        assert ack.duplicate and ack.seq == 8
    assert reads, "a hit is checked against the ids themselves"
    monkeypatch.undo()
    with EventLog(path) as lg:
        with pytest.raises(ConflictingEvent):
            lg.append([note(9, value="other")])
    for damage in (lambda b: b[:-3] + bytes([b[-3] ^ 1]) + b[-2:], lambda b: b.replace(b"[1,", b"[9,", 1)):
        cache.write_bytes(damage(cache.read_bytes()))
        with EventLog(path) as lg:
            assert lg.append([note(11)])[0].duplicate, "a damaged cache is not trusted"
            with pytest.raises(ConflictingEvent):
                lg.append([note(12, value="other")])


def test_duplicate_inside_one_batch(log: EventLog) -> None:
    acks = log.append([note(0), note(0)])
    assert [(a.seq, a.duplicate) for a in acks] == [(1, False), (1, True)]
    with pytest.raises(ConflictingEvent):
        log.append([note(5), note(5, value="other")])
    assert envelope(log).height == 1


def test_invalid_event_names_the_field_and_writes_nothing(log: EventLog) -> None:
    bad = SessionLine(stream="s", path="p", generation=0, line_no="seven", offset=0, raw=b"")  # type: ignore[arg-type]
    with pytest.raises(InvalidEvent, match=r"event 1: .*line_no"):
        log.append([note(0), bad])
    with pytest.raises(InvalidEvent, match="stream"):
        log.append([Annotation(stream="", target="t", key="k", value="v", author="a")])
    line = SessionLine(stream="s", path="p", generation=0, line_no=1, offset=0, raw=b"")
    with pytest.raises(InvalidEvent, match=r"event 2: field 'stream' is empty") as info:
        log.append([note(0), line, Annotation(stream="", target="t", key="k", value="v", author="a")])
    assert (info.value.index, info.value.field) == (2, "stream")
    assert envelope(log).height == 0


def test_a_type_reads_in_seq_order_across_seals_the_wal_and_versions(log: EventLog) -> None:
    """frame() skips the sort when one version's parts are in order already; with
    several versions interleaved it must still sort."""
    old = lambda i: AnnotationV1(stream="doc:1", event_id=f"old{i}", target="doc:1", key="k", value="v", author="a")
    log.append([note(0), note(1)])
    log.seal()
    log.append([note(2)])
    log.seal()
    log.append([note(3), note(4)])  # in the WAL
    assert log.snapshot().frame("annotation").collect()["seq"].to_list() == [1, 2, 3, 4, 5]
    log.append([old(0), note(5)])
    log.seal()
    log.append([note(6), old(1)])  # v1 and v2 both sealed and in the WAL
    frame = log.snapshot().frame("annotation").collect()
    assert frame["seq"].to_list() == list(range(1, 10)) and frame["event_id"][5] == "old0"


def test_mixed_batch_is_validated_per_class_and_reads_back_in_order(log: EventLog) -> None:
    line = SessionLine(stream="s", path="p", generation=0, line_no=1, offset=0, raw=b"{}\n")
    old = AnnotationV1(stream="doc:1", target="doc:1", key="k", value="v", author="a")
    bad = msgspec.structs.replace(old, key=3)  # type: ignore[arg-type]
    with pytest.raises(InvalidEvent, match=r"event 2: .*key"):
        log.append([note(0), line, bad])
    acks = log.append([note(0), line, old, note(1)])
    assert [a.seq for a in acks] == [1, 2, 3, 4]
    env = envelope(log)
    assert env["type"].to_list() == ["annotation", "session.line", "annotation", "annotation"]
    stored = [msgspec.msgpack.decode(r.data)["v"] for r in log.read_wal()[1]]
    assert stored == [3, 1, 1, 3] and env["v"].to_list() == [3, 1, 3, 3]  # v1 is upcast on read
    assert log.snapshot().frame("session.line").collect()["raw"].to_list() == [b"{}\n"]


def test_known_and_new_events_in_one_batch(log: EventLog) -> None:
    log.append([note(0), note(1)])
    acks = log.append([note(1), note(2), note(0), note(2)])
    assert [(a.seq, a.duplicate) for a in acks] == [(2, True), (3, False), (1, True), (3, True)]
    assert envelope(log)["event_id"].to_list() == ["e0", "e1", "e2"]


def test_v1_event_is_read_as_current_from_wal_and_from_segments(log: EventLog) -> None:
    log.append([AnnotationV1(stream="doc:1", event_id="old", target="doc:1", key="k", value="v", author="a")])
    for _ in range(2):  # first from the WAL, then from a sealed v1 segment file
        events = list(log.snapshot().events())
        assert len(events) == 1
        ev = events[0]
        assert isinstance(ev, Annotation) and ev.note is None and ev.taxonomy is None and ev.value == "v"
        frame = log.snapshot().frame("annotation").collect()
        assert frame["v"].to_list() == [3] and {"note", "taxonomy"} <= set(frame.columns)  # v1 -> v2 -> v3
        log.seal()
    files = [f.name for e in log.read_manifest().entries for f in e.files]
    assert files == ["seg-000000000001-000000000001.annotation.v1.parquet"], "old events must stay as written"


def test_snapshot_as_of_seq_and_time(log: EventLog) -> None:
    log.append([note(i) for i in range(3)])
    time.sleep(0.01)
    middle = datetime.now(timezone.utc)
    time.sleep(0.01)
    log.seal()
    log.append([note(i) for i in range(3, 6)])
    snap = log.snapshot()
    assert snap.as_of(4).envelope().collect()["seq"].to_list() == [1, 2, 3, 4]
    assert snap.seq_at(middle) == 3
    assert snap.seq_at(datetime(2000, 1, 1, tzinfo=timezone.utc)) == 0
    assert [e.seq for e in snap.as_of(snap.seq_at(middle)).events()] == [1, 2, 3]


def test_recorded_at_never_goes_backwards(log: EventLog) -> None:
    for i in range(20):
        log.append([note(i)])
    times = envelope(log)["recorded_at"].to_list()
    assert times == sorted(times)


def test_bulk_load_goes_after_the_wal_and_deduplicates(log: EventLog) -> None:
    log.append([note(0), note(1)])
    table = pa.table({
        "stream": ["doc:b"] * 3, "event_id": ["b0", "b1", "e1"],
        "target": ["doc:b"] * 3, "key": ["k"] * 3, "value": ["x", "y", "1"], "author": ["bulk"] * 3,
    })
    # e1 exists with stream doc:1: different content, so the whole load is refused.
    with pytest.raises(ConflictingEvent):
        log.append_table("annotation", table)
    table = table.slice(0, 2)
    acks = log.append_table("annotation", table)
    assert [a.seq for a in acks] == [3, 4]
    assert [a.duplicate for a in log.append_table("annotation", table)] == [True, True]
    acks = log.append([note(9)])
    assert acks[0].seq == 5
    env = envelope(log)
    assert env["seq"].to_list() == [1, 2, 3, 4, 5]
    assert log.read_manifest().entries[-1].last_seq == 4, "bulk rows are committed as a segment"


def test_a_large_bulk_load_is_written_as_several_files_in_seq_order(log: EventLog, monkeypatch) -> None:
    """Big tables are split into row ranges written at once (compression and hashing
    run on every core); readers and verify see one commit, rows in seq order."""
    from chronicle.store import segment_writer as log_module
    from chronicle.store.integrity import verify

    monkeypatch.setattr(log_module, "SPLIT_BYTES", 20_000)
    monkeypatch.setattr(log_module, "WRITERS", 3)
    log.append([note(0)])
    n = 3000
    table = pa.table({"stream": [f"doc:{i % 7}" for i in range(n)], "event_id": [f"big{i}" for i in range(n)],
                      "target": ["t"] * n, "key": ["k"] * n, "value": [f"value {i} " * 5 for i in range(n)],
                      "author": ["bulk"] * n})
    acks = log.append_table("annotation", table)
    assert [a.seq for a in acks] == list(range(2, n + 2))
    entry = log.read_manifest().entries[-1]
    names = [f.name for f in entry.files]
    assert [name.rsplit(".", 2)[-2] for name in names] == ["p0", "p1", "p2"]
    assert sum(f.rows for f in entry.files) == n
    frame = log.snapshot().frame("annotation", ["seq", "event_id"]).collect()
    assert frame["seq"].to_list() == list(range(1, n + 2))
    assert frame["event_id"].to_list()[1:] == table.column("event_id").to_pylist()
    assert verify(log, deep=True).problems == []
    seg = log.segment_dir / names[1]
    data = bytearray(seg.read_bytes())
    data[len(data) // 2] ^= 0x01
    seg.write_bytes(bytes(data))
    problems = verify(log).problems
    assert problems and problems[0].path == str(seg)


def test_a_forked_child_writes_split_segments_with_its_own_threads(log: EventLog, monkeypatch) -> None:
    """The segment writer pool's threads do not survive fork; a child that inherited
    the pool object would wait forever for them."""
    import os
    import signal

    from chronicle.store import segment_writer as log_module

    monkeypatch.setattr(log_module, "SPLIT_BYTES", 20_000)
    table = pa.table({"stream": ["doc:f"] * 2000, "target": ["t"] * 2000, "key": ["k"] * 2000,
                      "value": ["v" * 60] * 2000, "author": ["a"] * 2000})
    log.append_table("annotation", table)  # the parent's pool now exists
    pid = os.fork()
    if pid == 0:
        signal.alarm(20)
        try:
            EventLog(log.path).append_table("annotation", table)
        finally:
            os._exit(0 if EventLog(log.path).snapshot().head == 4000 else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert len(log.read_manifest().entries[-1].files) > 1


def test_bulk_load_validates_columns(log: EventLog) -> None:
    with pytest.raises(InvalidEvent, match="missing column.*author"):
        log.append_table("annotation", pa.table({"stream": ["s"], "target": ["t"], "key": ["k"], "value": ["v"]}))
    with pytest.raises(InvalidEvent, match="unknown column.*colour"):
        log.append_table("annotation", pa.table({"stream": ["s"], "target": ["t"], "key": ["k"], "value": ["v"],
                                                 "author": ["a"], "colour": ["red"]}))
    assert envelope(log).height == 0


def test_opening_a_directory_that_is_not_a_log(tmp_path) -> None:
    with pytest.raises(NotAWorkspace, match="chronicle init"):
        EventLog(tmp_path)


def test_columnar_content_hashes_equal_the_canonical_encoding() -> None:
    """The bulk path hashes rows from Arrow columns (blobs straight from the buffer);
    the WAL path hashes the canonical msgpack of each event: they must agree."""
    from chronicle.events import SessionMeta
    from chronicle.store import codec
    from chronicle.store.bulk import content_table

    blobs = [b"", b"x" * 300, b"y" * 70_000, b"\x00\xff" * 40_000]
    table = pa.table({"stream": ["s"] * 4, "event_id": list("abcd"), "path": ["p"] * 4, "kind": ["k"] * 4,
                      "sha256": ["h"] * 4, "raw": pa.array(blobs, pa.large_binary())})
    content = content_table(SessionMeta, codec.arrow_schema(SessionMeta), table)
    chunked = pa.concat_tables([content.slice(0, 1), content.slice(1, 2), content.slice(3)])
    # No event type has two blob columns or a null blob yet; the encoding must not care.
    two_blobs = pa.concat_tables([pa.table({
        "a": ["x", None, "z"], "b": pa.array([b"1", None, b"3" * 300], pa.large_binary()), "c": [1, 2, None],
        "d": pa.array([b"", b"4" * 70_000, None], pa.large_binary())})] * 2)
    for part in (content, content.slice(1, 2), chunked, two_blobs):
        rows = part.to_pylist()
        want = [codec.content_hash(codec.canonical(r)) for r in rows], [len(codec.canonical(r)) for r in rows]
        assert codec.content_hashes_from_table(part) == want
