"""The snapshot writer: a snapshot is the state at the moment it was taken, whatever the state
does while it is being stored; a failed store is logged and the next snapshot still stored."""

from __future__ import annotations

import threading

import redis

from events import types as t
from events.projection import apply
from events.snapshot import Encoded, SnapshotStore, SnapshotWriter
from events.state import FleetState
from events.store import EventStore

NOW = 1_700_000_000.0


def _state(store: EventStore, tasks: int) -> FleetState:
    state = FleetState()
    for i in range(tasks):
        event = t.TaskSubmitted(at=NOW, task_id=f"t{i}", spec=t.TaskDefinition(command=["true"]))
        state.position = store.append(event)
        apply(state, event)
    return state


class _Slow(SnapshotStore):
    """Stores only once `go` is set, and fails the writes it is told to."""

    def __init__(self, store: EventStore, failures: int = 0) -> None:
        super().__init__(store)
        self.go = threading.Event()
        self.entered = threading.Event()
        self.failures = failures
        self.written: list[str] = []

    def write(self, encoded: Encoded) -> str:
        self.entered.set()
        self.go.wait(10)
        if self.failures:
            self.failures -= 1
            raise OSError("disk full")
        self.written.append(encoded.position)
        return super().write(encoded)


def test_a_snapshot_is_the_state_when_it_was_taken(redis_client: redis.Redis) -> None:
    store = EventStore(redis_client, "writer-taken")
    state = _state(store, 3)
    snapshots = _Slow(store)
    writer = SnapshotWriter(snapshots)
    taken = state.position
    writer.take(state)
    later = t.TaskSubmitted(at=NOW, task_id="later", spec=t.TaskDefinition(command=["true"]))
    state.position = store.append(later)  # the orchestrator goes on while it is stored
    apply(state, later)
    snapshots.go.set()
    assert writer.flush(10)
    loaded = snapshots.load_latest()
    assert loaded is not None
    assert loaded.position == taken
    assert sorted(loaded.tasks) == ["t0", "t1", "t2"]


def test_a_newer_snapshot_replaces_one_still_waiting(redis_client: redis.Redis) -> None:
    store = EventStore(redis_client, "writer-newer")
    state = _state(store, 1)
    snapshots = _Slow(store)
    writer = SnapshotWriter(snapshots)
    writer.take(state)
    assert snapshots.entered.wait(10)  # being stored: the thread waits in `write`
    positions = []
    for i in range(3):
        event = t.TaskSubmitted(at=NOW, task_id=f"n{i}", spec=t.TaskDefinition(command=["true"]))
        state.position = store.append(event)
        apply(state, event)
        positions.append(state.position)
        writer.take(state)
    snapshots.go.set()
    assert writer.flush(10)
    assert snapshots.written[-1] == positions[-1]
    assert positions[0] not in snapshots.written  # replaced before it was stored
    assert len(snapshots.written) == 2


def test_a_failed_store_is_logged_and_the_next_snapshot_stored(redis_client: redis.Redis) -> None:
    store = EventStore(redis_client, "writer-failed")
    state = _state(store, 2)
    snapshots = _Slow(store, failures=1)
    snapshots.go.set()
    told: list[bool] = []
    writer = SnapshotWriter(snapshots, written=lambda: told.append(True))
    writer.take(state)
    assert writer.flush(10)
    assert snapshots.load_latest() is None  # the failure: nothing stored, nothing told
    assert told == []
    writer.take(state)
    assert writer.flush(10)
    loaded = snapshots.load_latest()
    assert loaded is not None
    assert loaded.position == state.position
    assert told == [True]
