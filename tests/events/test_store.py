"""The store against the real embedded server: appends, the derived index, conflicts, reads."""

from __future__ import annotations

import threading

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from events import (
    FleetState,
    TaskAssigned,
    TaskCompleted,
    TaskConflict,
    TaskDefinition,
    TaskQueued,
    TaskStarted,
    TaskSubmitted,
    apply_all,
)
from events.errors import StoreError, StoreUnavailable
from events.store import EventStore, IndexEntry, Records


@pytest.fixture
def store(redis_client: redis.Redis) -> EventStore:
    return EventStore(redis_client, "test")


def submit(task_id: str, after: list[str] | None = None, key: str | None = None) -> TaskSubmitted:
    spec = TaskDefinition(command=["true"], after=after or [], idempotency_key=key)
    return TaskSubmitted(at=1.0, task_id=task_id, spec=spec)


def assign(task_id: str, attempt: int = 1, epoch: int = 1) -> TaskAssigned:
    return TaskAssigned(at=2.0, task_id=task_id, attempt=attempt, agent_id="ag", epoch=epoch)


def test_append_and_read_back_in_order(store: EventStore) -> None:
    events = [submit(f"t{i}") for i in range(5)]
    ids = store.append_batch(events)
    assert len(ids) == 5
    assert ids == sorted(ids, key=lambda i: tuple(map(int, i.split("-"))))
    assert [e.event for e in store.read_range()] == events
    assert [e.event for e in store.read_from(ids[2])] == events[3:]
    assert store.append_batch([]) == []
    assert store.last_id() == ids[-1]


def test_index_follows_the_state_machine(store: EventStore) -> None:
    store.append_batch([submit("a"), submit("b", after=["a"])])
    assert store.task_index("a") == IndexEntry("queued", 0, None)
    assert store.task_index("b") == IndexEntry("pending", 0, None)
    store.claim("a", assign("a", epoch=7))
    assert store.task_index("a") == IndexEntry("assigned", 1, 7)
    # an illegal transition is appended (the log is the log) but changes nothing
    store.append(TaskQueued(at=3.0, task_id="missing"))
    assert store.task_index("missing") is None


def test_claim_conflict_reports_the_current_state(store: EventStore) -> None:
    store.append(submit("a"))
    store.claim("a", assign("a"))
    with pytest.raises(TaskConflict) as info:
        store.claim("a", assign("a"))
    assert info.value.current == {"state": "assigned", "attempt": 1, "epoch": 1}
    assert store.length() == 2


def test_complete_fences_stale_attempt_and_epoch(store: EventStore) -> None:
    store.append(submit("a"))
    store.claim("a", assign("a", attempt=1, epoch=5))
    done = TaskCompleted(at=3.0, task_id="a", attempt=1, agent_id="ag")
    with pytest.raises(TaskConflict):
        store.complete("a", 1, 4, done)  # an old daemon epoch
    with pytest.raises(TaskConflict):
        store.complete("a", 2, 5, done)  # another attempt
    store.complete("a", 1, 5, TaskStarted(at=2.5, task_id="a", attempt=1, agent_id="ag"))
    store.complete("a", 1, 5, done)
    assert store.task_index("a") == IndexEntry("completed", 1, 5)
    with pytest.raises(TaskConflict):
        store.complete("a", 1, 5, done)  # no double completion


def test_several_conditional_groups_in_one_call_are_each_fenced(store: EventStore) -> None:
    store.append_batch([submit("a"), submit("b"), submit("c")])
    position = store.last_id()
    store.append(submit("d"))  # another writer, after our position
    store.claim("b", assign("b"))  # b is no longer queued
    appended = store.append_groups(
        [
            Records([assign("a")], "a", {"state": "queued"}),
            Records([assign("b", attempt=2)], "b", {"state": "queued"}),  # refused
            Records([submit("e")]),  # an unconditional group between conditional ones
            Records([assign("c", epoch=4)], "c", {"state": "queued"}),
            Records([assign("a", attempt=2)], "a", {"state": "queued"}),  # a was just taken
            Records([assign("zz")], "zz", {}),  # no expectation, but an illegal transition
        ],
        after=position,
    )
    done, refused_b, plain, claimed_c, refused_a, refused_zz = appended.results
    assert isinstance(done, list)
    assert isinstance(plain, list)
    assert isinstance(claimed_c, list)
    assert isinstance(refused_b, TaskConflict)
    assert refused_b.current == {"state": "assigned", "attempt": 1, "epoch": 1}
    assert isinstance(refused_a, TaskConflict)
    assert refused_a.current == {"state": "assigned", "attempt": 1, "epoch": 1}
    assert isinstance(refused_zz, TaskConflict)
    assert refused_zz.current is None
    # the index is right for every group, accepted or not
    assert store.task_index("a") == IndexEntry("assigned", 1, 1)
    assert store.task_index("b") == IndexEntry("assigned", 1, 1)
    assert store.task_index("c") == IndexEntry("assigned", 1, 4)
    assert store.task_index("e") == IndexEntry("queued", 0, None)
    assert store.task_index("zz") is None
    # what others appended since our position came back, and the log holds only the accepted
    assert appended.entries is not None
    assert [e.event for e in appended.entries] == [submit("d"), assign("b")]
    assert appended.prev == appended.entries[-1].id
    log = store.read_from(appended.prev)
    assert [e.id for e in log] == [*done, *plain, *claimed_c]
    assert [e.event for e in log] == [assign("a"), submit("e"), assign("c", epoch=4)]


def test_an_append_sends_back_what_others_wrote_only_up_to_a_limit(store: EventStore) -> None:
    first = store.append(submit("a"))
    store.append_batch([submit("b"), submit("c")])
    assert store.append_groups([Records([submit("x")])], after=first, most=1).entries is None
    last = store.last_id()
    nothing = store.append_groups([Records([submit("y")])], after=last)
    assert nothing.entries == []
    assert nothing.prev == last
    assert store.append_groups([Records([submit("z")])]).entries is None  # not asked for
    with pytest.raises(StoreError):  # a conditional group's extras must not touch a task
        store.append_groups([Records([assign("a"), assign("b")], "a", {"state": "queued"})])


def test_duplicate_submission_and_idempotency_key(store: EventStore) -> None:
    store.append(submit("a", key="k"))
    store.append(submit("b", key="k"))
    store.append(submit("a"))
    assert store.task_index("b") is None
    state = apply_all(FleetState(), [e.event for e in store.read_range()])
    assert state.idempotency == {"k": "a"}
    assert set(state.tasks) == {"a"}
    assert state.anomalies == 2


def test_rebuild_index_from_replay(store: EventStore) -> None:
    store.append_batch([submit("a"), submit("b", after=["a"]), submit("c", key="x")])
    store.claim("a", assign("a", epoch=3))
    before = store.index_entries()
    store.client.delete(store.keys.index, store.keys.idempotency)
    state = apply_all(FleetState(), [e.event for e in store.read_range()])
    assert store.rebuild_index(state) == 3
    assert store.index_entries() == before


def test_tail_blocks_until_an_event_arrives(store: EventStore) -> None:
    store.append(submit("old"))
    stop = threading.Event()
    seen: list[str] = []
    got = threading.Event()

    def reader() -> None:
        for entry in store.tail(block_ms=100, stop=stop):
            seen.append(entry.event.task_id)  # type: ignore[attr-defined]
            got.set()

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        store.append(submit("new"))
        assert got.wait(5)
    finally:
        stop.set()
        thread.join(5)
    assert seen == ["new"]


def test_decode_responses_client_is_refused(embedded_server: object) -> None:
    client = redis.Redis(unix_socket_path="/nonexistent", decode_responses=True)
    with pytest.raises(StoreError):
        EventStore(client, "x")


def test_unreachable_server_raises_store_unavailable() -> None:
    client = redis.Redis(
        unix_socket_path="/tmp/forge-no-such.sock",
        socket_connect_timeout=0.2,
        retry=Retry(NoBackoff(), 0),
    )
    store = EventStore(client, "x")
    with pytest.raises(StoreUnavailable):
        store.append(submit("a"))


def test_namespaces_use_a_hash_tag() -> None:
    from events.keys import Keys

    keys = Keys.for_namespace("prod")
    assert keys.log == "forge:{prod}:log"
    with pytest.raises(ValueError, match="namespace"):
        Keys.for_namespace("a}b")
