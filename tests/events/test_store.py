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
from events.store import EventStore, IndexEntry


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
