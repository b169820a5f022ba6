"""The packed map (the fleet state's finished tasks and idempotency keys) behaves as the dict
it replaces, encodes alike for alike contents, and costs a few bytes an entry."""

from __future__ import annotations

import tracemalloc

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from events.packed_map import PackedMap
from events.state import FleetState, dec_hook, enc_hook

# ids as Forge makes them, short ones that share buckets, and odd ones (separator bytes, lone
# surrogates, other scripts); values: final states, and task ids (an idempotency key's)
IDS = st.one_of(
    st.sampled_from(["a", "b", "task-00000000000000ff", "t\x00x", "\x01", "t\ud800", "タスク"]),
    st.text(min_size=1, max_size=12),
)
VALUES = st.one_of(st.sampled_from(["completed|1|1", "dead_lettered|3|", "cancelled|0|12"]), IDS)
OPS = st.lists(
    st.tuples(st.sampled_from(["set", "del", "pop", "setdefault"]), IDS, VALUES), max_size=60
)


def _surrogate(text: str) -> bool:
    return any(0xD800 <= ord(c) <= 0xDFFF for c in text)


@settings(max_examples=300, deadline=None)
@given(OPS)
def test_it_behaves_as_a_dict(ops: list[tuple[str, str, str]]) -> None:
    packed, model = PackedMap(), dict[str, str]()
    for op, task_id, value in ops:
        if op == "set":
            packed[task_id] = value
            model[task_id] = value
        elif op == "del":
            if task_id in model:
                del packed[task_id]
                del model[task_id]
            else:
                with pytest.raises(KeyError):
                    del packed[task_id]
        elif op == "pop":
            assert packed.pop(task_id, None) == model.pop(task_id, None)
        else:
            assert packed.setdefault(task_id, value) == model.setdefault(task_id, value)
        assert len(packed) == len(model)
        assert (task_id in packed) == (task_id in model)
        assert packed.get(task_id) == model.get(task_id)
    assert dict(packed.items()) == model
    assert sorted(packed) == sorted(model)
    assert packed == model
    buckets, odd = packed.packed()
    if any(_surrogate(k) or _surrogate(v) for k, v in odd.items()):  # (msgpack: UTF-8 only,
        form = [{n: bytes(b) for n, b in buckets.items()}, odd]  # as in the log's events)
    else:
        form = msgspec.msgpack.decode(msgspec.msgpack.encode(packed.packed()))
    again = PackedMap.unpack(form)
    assert again == packed
    assert again.packed() == packed.packed()
    assert packed.copy().packed() == packed.packed()
    rebuilt = PackedMap(model.items())  # the same contents, inserted afresh
    assert rebuilt == packed
    assert PackedMap.unpack(model) == packed  # (a state encoded with a plain dict)


def test_the_same_entries_in_the_same_order_encode_alike_and_emptied_is_empty() -> None:
    one, two = PackedMap(), PackedMap()
    for n in range(500):
        one[f"task-{n:016x}"] = "completed|1|1"
        two[f"task-{n:016x}"] = "completed|1|1"
    assert one.packed() == two.packed()
    for n in range(500):
        del one[f"task-{n:016x}"]
    assert one.packed() == PackedMap().packed()
    assert not one


def test_a_state_with_one_round_trips_through_its_encoders() -> None:
    state = FleetState()
    state.finished["a"] = "completed|1|1"
    state.finished["b\x00"] = "cancelled|0|"
    state.idempotency["key"] = "a"
    state.idempotency["odd"] = "b\x00"
    body = msgspec.msgpack.encode(state, enc_hook=enc_hook)
    back = msgspec.msgpack.decode(body, type=FleetState, dec_hook=dec_hook)
    assert back.same_as(state)
    assert back.finished == {"a": "completed|1|1", "b\x00": "cancelled|0|"}
    assert back.idempotency == {"key": "a", "odd": "b\x00"}
    assert state.copy().finished == state.finished


@pytest.mark.parametrize(
    "raw",
    [
        [{5000: b"\x00a\x01completed|1|1"}, {}],
        [{1: b"a"}, {}],
        [{1: "text"}, {}],
        [[], {}],
        [{}, {"plain": "belongs in a bucket"}],
        7,
    ],
)
def test_a_foreign_packed_form_is_refused(raw: object) -> None:
    with pytest.raises(ValueError, match="packed map"):
        PackedMap.unpack(raw)


def test_200000_finished_tasks_take_a_few_megabytes() -> None:
    ids = [f"task-{n:016x}" for n in range(200_000)]
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        packed = PackedMap()
        for task_id in ids:
            packed[task_id] = "completed|1|1"
        packed_bytes = tracemalloc.get_traced_memory()[0] - before
        plain = {task_id.encode().decode(): "completed|1|1" for task_id in ids}
        plain_bytes = tracemalloc.get_traced_memory()[0] - before - packed_bytes
    finally:
        tracemalloc.stop()
    assert len(packed) == len(plain) == 200_000
    per_task = packed_bytes / 200_000
    assert per_task < 50, per_task  # the id, its value and two separators, in a bucket
    assert packed_bytes * 2 < plain_bytes  # a dict with a string object per id: ~108 bytes
