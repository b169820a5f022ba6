"""Entries that Forge did not write (any bytes as field names and values, missing fields, huge
fields, absurd times): every reader quarantines and skips them, and they agree on what they
skip, so replay and the live reader see the same events."""

from __future__ import annotations

import math

import msgspec
import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from events import types as t
from events.codec import decode_entry, encode_entry
from events.errors import UndecodableEvent
from events.replay import replay
from events.store import KEEP_BYTES, EventStore

NOW = 1_700_000_000.0


def _queued(n: int) -> t.TaskSubmitted:
    return t.TaskSubmitted(at=NOW + n, task_id=f"t{n}", spec=t.TaskDefinition(command=["true"]))


def _raw_event(**data: object) -> dict[bytes, bytes]:
    return {b"d": msgspec.msgpack.encode({"type": "task.queued", "task_id": "x", **data})}


FOREIGN = {
    "non-utf8 field name": {b"\xf0\x28": b"x"},
    "non-utf8 name beside a data field": {b"d": b"\xff\xfe", b"\xc3\x28": b"\x00"},
    "no fields we know": {b"type": b"task.queued"},
    "empty data": {b"d": b""},
    "msgpack key not UTF-8": {b"d": b"\x81\xa1\x80\x00"},
    "msgpack string not UTF-8": {b"d": b"\x82\xa4type\xa1\x80\xa2at\x01"},
    "deeply nested data": {b"d": b"\x81\xa4type" + b"\x91" * 50_000 + b"\xc0"},
    "valid event with trailing bytes": {b"d": encode_entry(_queued(0))[b"d"] + b"\x00"},
    "version with a sign": {**encode_entry(_queued(0)), b"v": b"+1"},
    "version in exponent form": {**encode_entry(_queued(0)), b"v": b"1e0"},
    "version not ascii": {**encode_entry(_queued(0)), b"v": b"\xd9\xa1"},
    "NaN time": _raw_event(at=math.nan),
    "infinite time": _raw_event(at=math.inf),
    "time 1e300": _raw_event(at=1e300),
    "time before 1970": _raw_event(at=-1.0),
    "huge field": {b"d": b"\xc1" * (4 * KEEP_BYTES), b"x" * KEEP_BYTES: b"y"},
}


@pytest.fixture
def store(redis_client: redis.Redis) -> EventStore:
    return EventStore(redis_client, "foreign")


@pytest.mark.parametrize("fields", FOREIGN.values(), ids=FOREIGN.keys())
def test_every_reader_skips_a_foreign_entry_alike(
    store: EventStore, fields: dict[bytes, bytes]
) -> None:
    store.append(_queued(1))
    foreign_id = store.client.xadd(store.keys.log, fields).decode()  # type: ignore[union-attr]
    store.append(_queued(2))
    expected = ["t1", "t2"]

    assert [e.event.task_id for e in store.read_range()] == expected  # type: ignore[attr-defined]
    paged = [event for page in store.pages() for _, _, event in page]
    assert [e.task_id for e in paged] == expected  # type: ignore[attr-defined]
    state, report = replay(store, use_snapshot=False)
    assert sorted(state.tasks) == expected
    assert state.event_count == 2
    assert [q.stream_id for q in report.quarantined] == [foreign_id]
    (record,) = store.quarantined()
    assert record.stream_id == foreign_id


def test_the_quarantine_record_keeps_the_raw_bytes(store: EventStore) -> None:
    fields = {b"\xf0\x28": b"\x00\xff", b"d": b"\xc1", b"note": b"\xfe"}
    foreign_id = store.client.xadd(store.keys.log, fields).decode()  # type: ignore[union-attr]

    assert store.read_range() == []
    (record,) = store.quarantined()
    assert record.stream_id == foreign_id
    assert record.fields == {"d": b"\xc1", "note": b"\xfe"}
    assert record.foreign_fields == [(b"\xf0\x28", b"\x00\xff")]
    assert not record.truncated


def test_a_huge_entry_is_quarantined_with_a_bounded_copy(store: EventStore) -> None:
    store.client.xadd(store.keys.log, {b"d": b"\xc1" * (4 * KEEP_BYTES), b"n": b"x"})

    assert store.read_range() == []
    (record,) = store.quarantined()
    assert record.size == 4 * KEEP_BYTES
    assert record.truncated
    kept = sum(len(k) + len(v) for k, v in record.fields.items())
    assert kept <= KEEP_BYTES
    assert record.fields["d"] == b"\xc1" * (KEEP_BYTES - 1)


def test_an_unreadable_quarantine_record_is_listed_not_fatal(store: EventStore) -> None:
    store.client.hset(store.keys.quarantine, "5-0", b"\xc1not msgpack")
    store.client.hset(store.keys.quarantine, b"\xff", b"\xc1")

    records = store.quarantined()

    assert [(r.stream_id, r.reason) for r in records] == [
        ("\\xff", "unreadable record"),
        ("5-0", "unreadable record"),
    ]


def test_a_counted_read_is_short_only_at_the_end_of_the_log(store: EventStore) -> None:
    """The orchestrator pages with `read_from(position, count)` until a short page: entries
    that are quarantined must not make a page short before the end of the log."""
    store.append(_queued(1))
    for _ in range(3):
        store.client.xadd(store.keys.log, {b"\xf0\x28": b"x"})
    store.append_batch([_queued(2), _queued(3)])

    page = store.read_from("0-0", count=3)

    assert [e.event.task_id for e in page] == ["t1", "t2", "t3"]  # type: ignore[attr-defined]
    assert [e.event.task_id for e in store.read_from(page[0].id, 5)] == ["t2", "t3"]  # type: ignore[attr-defined]


_byte_fields = st.dictionaries(
    st.one_of(st.binary(max_size=8), st.sampled_from([b"d", b"v"])),
    st.binary(max_size=64),
    max_size=4,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_byte_fields)
def test_decoding_any_entry_raises_only_undecodable_event(fields: dict[bytes, bytes]) -> None:
    try:
        event = decode_entry(fields)
    except UndecodableEvent:
        return
    assert 0.0 <= event.at <= t.MAX_TIMESTAMP
