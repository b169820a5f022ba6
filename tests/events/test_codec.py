"""Codec: every event round-trips; older schemas are upcast; bad entries are refused."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given, settings

from events import UndecodableEvent, decode, decode_entry, encode, encode_entry
from events.types import EVENT_TYPES, AnyEvent, Event, TaskUsage
from tests.strategies import any_event


@settings(max_examples=300)
@given(any_event)
def test_every_event_round_trips(event: Event) -> None:
    assert decode(encode(event)) == event
    assert decode_entry(encode_entry(event)) == event


def test_tags_are_explicit_and_unique() -> None:
    assert len(EVENT_TYPES) == len(AnyEvent.__args__)  # one class per tag, none shared
    for tag, cls in EVENT_TYPES.items():
        assert "." in tag, f"{cls.__name__} needs an explicit dotted tag"
        assert isinstance(cls.schema, int)


def test_task_usage_v1_is_upcast() -> None:
    old = msgspec.msgpack.encode(
        {"type": "task.usage", "at": 1.0, "task_id": "a", "attempt": 2, "tokens": 7, "cost": 0.25}
    )
    event = decode_entry({b"d": old, b"v": b"1"})
    assert event == TaskUsage(
        at=1.0, task_id="a", attempt=2, input_tokens=7, output_tokens=0, cost_usd=0.25
    )


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({b"d": b"\xc1"}, "corrupt"),
        ({b"d": msgspec.msgpack.encode({"type": "no.such", "at": 1.0})}, "unknown"),
        ({b"d": msgspec.msgpack.encode({"type": "task.queued", "at": 1.0})}, "invalid"),
        ({b"x": b"1"}, "no event data"),
        (
            {b"d": encode_entry(TaskUsage(at=1, task_id="a", attempt=1))[b"d"], b"v": b"x"},
            "version",
        ),
        ({b"d": encode_entry(TaskUsage(at=1, task_id="a", attempt=1))[b"d"], b"v": b"9"}, "newer"),
    ],
)
def test_undecodable_entries_raise(fields: dict[bytes, bytes], reason: str) -> None:
    with pytest.raises(UndecodableEvent, match=reason):
        decode_entry(fields)
