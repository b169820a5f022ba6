"""The Ledger, the orchestrator's copy of the log: its state is always the fold of the log up
to its position, whatever it appended itself, others appended in between, or was refused."""

from __future__ import annotations

import time
from typing import Any

import redis

from actors.clock import SystemClock
from actors.ledger import Conditional, Ledger
from events import types as t
from events.replay import replay
from events.state import FleetState, PackedMap
from events.store import EventStore


def _submitted(task_id: str) -> t.TaskSubmitted:
    return t.TaskSubmitted(at=time.time(), task_id=task_id, spec=t.TaskDefinition(command=["true"]))


def _assigned(task_id: str, agent_id: str = "a1") -> t.TaskAssigned:
    return t.TaskAssigned(
        at=time.time(), task_id=task_id, attempt=1, agent_id=agent_id, epoch=1, node_id="n"
    )


def test_conditional_records_are_each_fenced_and_the_state_follows_the_log(
    redis_client: redis.Redis,
) -> None:
    store = EventStore(redis_client, "ledger")
    seen: list[t.Event] = []
    ledger = Ledger(store, FleetState(), SystemClock(), react=seen.append)
    ledger.append([_submitted("x"), _submitted("y")])  # queued: no dependencies
    store.append(_submitted("z"))  # another writer, between two of our appends
    ledger.live = True

    busy = t.AgentBusy(at=time.time(), agent_id="a1", task_id="x", attempt=1)
    results = ledger.append_if(
        Conditional("x", {"state": "queued"}, _assigned("x"), (busy,)),
        Conditional("x", {"state": "queued"}, _assigned("x", "a2")),  # claimed just before
        Conditional("y", {"state": "queued"}, _assigned("y", "a2")),  # not held back by it
    )

    assert results == [True, False, True]
    assert (ledger.state.tasks["x"].state, ledger.state.tasks["x"].agent_id) == ("assigned", "a1")
    assert ledger.state.tasks["y"].state == "assigned"
    assert "z" in ledger.state.tasks  # caught up with the other writer's entry
    assert ledger.position == store.last_id()
    replayed, _ = replay(store)
    assert replayed.tasks.keys() == ledger.state.tasks.keys()
    assert {k: v.state for k, v in replayed.tasks.items()} == {
        k: v.state for k, v in ledger.state.tasks.items()
    }
    # once live, every applied event is handed over, others' as well as our own
    assert [type(e) for e in seen] == [t.TaskSubmitted, t.TaskAssigned, t.AgentBusy, t.TaskAssigned]


class ReadCountingStore(EventStore):
    """The store, counting the reads of the log it is asked for."""

    reads = 0

    def read_range(self, start: str = "-", end: str = "+", count: int | None = None) -> Any:
        self.reads += 1
        return super().read_range(start, end, count)


def test_what_others_appended_comes_back_with_the_append_without_a_read(
    redis_client: redis.Redis,
) -> None:
    store = ReadCountingStore(redis_client, "ledger-reads")
    ledger = Ledger(store, FleetState(), SystemClock(), react=lambda event: None)
    ledger.append([_submitted("x")])
    store.append_batch([_submitted("y"), _submitted("z")])  # another writer
    [claimed] = ledger.append_if(Conditional("y", {"state": "queued"}, _assigned("y")))
    assert claimed
    assert store.reads == 0
    assert list(ledger.state.tasks) == ["x", "y", "z"]
    assert ledger.state.tasks["y"].state == "assigned"
    assert ledger.position == store.last_id()
    replayed, _ = replay(store)
    assert replayed.same_as(ledger.state)

    store.append_batch([_submitted(f"many{i}") for i in range(1200)])  # more than come back
    ledger.append([_submitted("w")])
    assert store.reads > 0  # then the ledger reads them
    assert len(ledger.state.tasks) == 1204
    assert replay(store)[0].same_as(ledger.state)


def test_snapshots_come_every_n_events_while_n_tasks_are_live(redis_client: redis.Redis) -> None:
    store = EventStore(redis_client, "ledger-snapshots")
    taken: list[int] = []
    ledger = Ledger(
        store,
        FleetState(),
        SystemClock(),
        react=lambda _: None,
        checkpoint=lambda state: taken.append(state.event_count),
        snapshot_every=10,
    )
    for i in range(10):  # few live tasks: every 10 events
        ledger.append([_submitted(f"a{i}")])
    assert taken == [10]
    ledger.append([_submitted(f"b{i}") for i in range(30)])  # 40 live tasks now
    assert taken == [10]  # a snapshot encodes 40 tasks: not before 40 more events
    for i in range(9):
        ledger.append([_assigned(f"b{i}")])
    assert taken == [10]
    ledger.append([_assigned("b9")])
    assert taken == [10, 50]


def test_snapshots_come_every_f_tenths_events_while_f_tasks_are_finished(
    redis_client: redis.Redis,
) -> None:
    store = EventStore(redis_client, "ledger-snapshots-finished")
    taken: list[int] = []
    state = FleetState()
    old = {f"old{i}": "completed|1|1" for i in range(500)}
    state.finished = PackedMap(old)  # a snapshot encodes them
    ledger = Ledger(
        store,
        state,
        SystemClock(),
        react=lambda _: None,
        checkpoint=lambda state: taken.append(state.event_count),
        snapshot_every=10,
    )
    for i in range(49):  # 500 finished tasks weigh as 50 live ones: not before 50 events
        ledger.append([_submitted(f"a{i}")])
    assert taken == []
    ledger.append([_submitted("a49")])  # (50 live tasks now, too)
    assert taken == [50]
