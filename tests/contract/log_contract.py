"""The event log's persistence contract, as public behaviour (after the
``eventsourcing`` library's recorder test case that every backend subclasses).

A backend's test module subclasses ``EventLogContract`` and provides
``open_log``: a function that opens one more writer on one log kept on that
backend (each call as another process would). The promises:

1. every acknowledged event has a seq, contiguous from 1, in acknowledgement
   order, across batches, seals and bulk loads, and across writers;
2. a batch is all or nothing: a bad event or a conflicting id fails it whole;
3. an event id is unique across every write path: the same content again is a
   duplicate acknowledged at its first seq, other content is refused;
4. a snapshot is fixed at its head; sealing changes no event's seq, content
   or hash; a reopened log reads and verifies the same.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import pyarrow as pa
import pytest

from chronicle.events import Annotation
from chronicle.store import ConflictingEvent, EventLog, InvalidEvent
from chronicle.store import integrity

Opener = Callable[[], EventLog]


def note(i: int, event_id: str | None = None, value: str | None = None) -> Annotation:
    return Annotation(stream="doc:1", event_id=event_id or f"e{i}", target="doc:1", key="k",
                      value=value if value is not None else str(i), author="contract")


def bulk(*rows: tuple[str, str]) -> dict[str, pa.Table]:
    """Annotations as a bulk load: (event_id, value) per row."""
    return {"annotation": pa.table({"stream": ["doc:1"] * len(rows), "event_id": [r[0] for r in rows],
                                    "target": ["doc:1"] * len(rows), "key": ["k"] * len(rows),
                                    "value": [r[1] for r in rows], "author": ["contract"] * len(rows)})}


def events(log: EventLog) -> list[tuple[int, str, str]]:
    frame = log.snapshot().frame("annotation", ["seq", "event_id", "value"]).collect()
    return list(frame.iter_rows())


class EventLogContract:
    @pytest.fixture
    def open_log(self, tmp_path) -> Opener:
        raise NotImplementedError

    def test_seqs_are_contiguous_across_batches_seals_bulk_loads_and_writers(self, open_log: Opener) -> None:
        a, b = open_log(), open_log()
        assert [ack.seq for ack in a.append([note(1), note(2)])] == [1, 2]
        assert [ack.seq for ack in b.append([note(3)])] == [3]
        a.seal()
        assert [ack.seq for ack in b.append_tables(bulk(("e4", "4"), ("e5", "5")))] == [4, 5]
        assert [ack.seq for ack in a.append([note(6)])] == [6]
        assert [(s, e) for s, e, _ in events(open_log())] == [(i, f"e{i}") for i in range(1, 7)]

    def test_writers_side_by_side_get_distinct_seqs_and_lose_nothing(self, open_log: Opener) -> None:
        acks: list = []

        def write(w: int) -> None:
            log = open_log()
            for k in range(20):
                acks.extend(log.append([note(0, event_id=f"w{w}-{k}")]))

        threads = [threading.Thread(target=write, args=(w,)) for w in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert sorted(a.seq for a in acks) == list(range(1, 81))
        assert {e for _, e, _ in events(open_log())} == {a.event_id for a in acks}

    def test_the_same_event_again_is_a_duplicate_at_its_first_seq_on_every_path(self, open_log: Opener) -> None:
        a, b = open_log(), open_log()
        a.append([note(1), note(2)])
        assert [tuple(x) for x in b.append([note(2), note(3)])] == [(2, "e2", True), (3, "e3", False)]
        a.seal()
        assert [tuple(x) for x in a.append([note(1)])] == [(1, "e1", True)]  # now sealed
        assert [tuple(x) for x in b.append_tables(bulk(("e3", "3"), ("e4", "4")))] == [(3, "e3", True),
                                                                                    (4, "e4", False)]
        assert [tuple(x) for x in a.append([note(4), note(4)])] == [(4, "e4", True), (4, "e4", True)]
        assert len(events(open_log())) == 4

    def test_an_id_recorded_with_other_content_fails_the_whole_batch(self, open_log: Opener) -> None:
        log = open_log()
        log.append([note(1)])
        with pytest.raises(ConflictingEvent) as caught:
            log.append([note(2), note(1, value="changed")])
        assert caught.value.event_id == "e1" and caught.value.seq == 1
        with pytest.raises(ConflictingEvent):
            open_log().append_tables(bulk(("e3", "3"), ("e1", "changed")))
        with pytest.raises(ConflictingEvent):  # twice in one batch, two contents
            log.append([note(5), note(5, value="other")])
        assert events(open_log()) == [(1, "e1", "1")]

    def test_a_bad_event_fails_its_whole_batch(self, open_log: Opener) -> None:
        log = open_log()
        with pytest.raises(InvalidEvent):
            log.append([note(1), Annotation(stream="", event_id="bad", target="t", key="k", value="v", author="a")])
        with pytest.raises(InvalidEvent):
            log.append_tables({"annotation": pa.table({"stream": ["doc:1"], "event_id": ["x"]})})  # fields missing
        assert events(log) == [] and log.snapshot().head == 0
        assert [a.seq for a in log.append([note(1)])] == [1]  # and the log goes on

    def test_every_write_path_refuses_the_same_bad_json_naming_the_field(self, open_log: Opener) -> None:
        from chronicle.events import PricesImported

        log = open_log()
        bad = "{not json"
        with pytest.raises(InvalidEvent) as one:
            log.append([PricesImported(stream="prices", event_id="p1", source="f", sha256="0", format="chronicle",
                                       table_json=bad)])
        with pytest.raises(InvalidEvent) as many:
            log.append_tables({"prices.imported": pa.table({"stream": ["prices"], "event_id": ["p1"], "source": ["f"],
                                                            "sha256": ["0"], "format": ["chronicle"],
                                                            "table_json": [bad]})})
        assert one.value.field == many.value.field == "table_json"
        assert "is not valid JSON" in str(one.value) and "is not valid JSON" in str(many.value)
        assert log.snapshot().head == 0

    def test_a_snapshot_is_fixed_at_its_head(self, open_log: Opener) -> None:
        log = open_log()
        log.append([note(1), note(2)])
        snap = log.snapshot()
        open_log().append([note(3)])
        log.seal()
        assert snap.head == 2 and [s for s, _, _ in
                                   [r for r in snap.frame("annotation", ["seq", "event_id", "value"]).collect().iter_rows()]] == [1, 2]
        assert log.snapshot().head == 3

    def test_sealing_changes_no_event_and_a_reopened_log_reads_and_verifies_the_same(self, open_log: Opener) -> None:
        log = open_log()
        log.append([note(i) for i in range(1, 4)])
        log.append_tables(bulk(("e4", "4")))
        log.append([note(5)])
        before = log.snapshot().envelope().collect()
        hash_before = integrity.checkpoint(log).head_hash
        log.seal()
        again = open_log()
        assert again.snapshot().envelope().collect().equals(before)
        report = integrity.verify(again)
        assert report.ok and report.events == 5 and report.head_hash == hash_before
