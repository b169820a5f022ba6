"""The core property: for any sequence of operations through the store, the live state equals
the replayed state, a snapshot plus the tail equals a full replay, replaying twice gives the same
state, and the derived index agrees with the projection."""

from __future__ import annotations

import itertools

import msgspec
import redis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from events import (
    EventStore,
    FleetState,
    SnapshotStore,
    TaskAssigned,
    TaskCancelled,
    TaskCompleted,
    TaskConflict,
    TaskContinued,
    TaskDeadLettered,
    TaskDefinition,
    TaskFailed,
    TaskQueued,
    TaskRetryScheduled,
    TaskStarted,
    TaskSubmitted,
    TaskUsage,
    apply,
    replay,
)
from events.store import IndexEntry
from events.task_index import TaskIndex
from events.types import Event
from forge.server import EmbeddedServer

_namespaces = itertools.count()
_client: redis.Redis | None = None
task_ids = st.sampled_from([f"t{i}" for i in range(6)])


class LogMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        assert _client is not None
        self.store = EventStore(_client, f"sm{next(_namespaces)}")
        self.snapshots = SnapshotStore(self.store, keep=2)
        self.live = FleetState()
        self.clock = 1000.0
        self.epoch = 1

    def now(self) -> float:
        self.clock += 1.0
        return self.clock

    def append(self, event: Event) -> None:
        self.live.position = self.store.append(event)
        apply(self.live, event)

    def conditional(self, call: object) -> None:
        """Run a conditional append; on conflict the live state must be unchanged."""
        assert callable(call)
        try:
            position, event = call()
        except TaskConflict:
            return
        self.live.position = position
        apply(self.live, event)

    @rule(task_id=task_ids, deps=st.lists(task_ids, max_size=2), prio=st.integers(1, 5))
    def submit(self, task_id: str, deps: list[str], prio: int) -> None:
        spec = TaskDefinition(command=["x"], priority=prio, after=deps)
        self.append(TaskSubmitted(at=self.now(), task_id=task_id, spec=spec))

    @rule(task_id=task_ids)
    def claim(self, task_id: str) -> None:
        task = self.live.tasks.get(task_id)
        attempt = (task.attempt if task else 0) + 1
        event = TaskAssigned(
            at=self.now(), task_id=task_id, attempt=attempt, agent_id="a", epoch=self.epoch
        )
        self.conditional(lambda: (self.store.claim(task_id, event), event))
        assert (self.store.task_index(task_id) or IndexEntry("", None, None)).state != "queued"

    @rule(task_id=task_ids, outcome=st.sampled_from(["start", "done", "fail", "usage"]))
    def report(self, task_id: str, outcome: str) -> None:
        task = self.live.tasks.get(task_id)
        attempt, epoch = (task.attempt, task.epoch or 0) if task else (1, 0)
        at = self.now()
        event: Event
        if outcome == "start":
            event = TaskStarted(at=at, task_id=task_id, attempt=attempt, agent_id="a")
        elif outcome == "done":
            event = TaskCompleted(at=at, task_id=task_id, attempt=attempt, agent_id="a")
        elif outcome == "fail":
            event = TaskFailed(at=at, task_id=task_id, attempt=attempt, failure="crash")
        else:
            event = TaskUsage(at=at, task_id=task_id, attempt=attempt, cost_usd=at / 1000)
        self.conditional(lambda: (self.store.complete(task_id, attempt, epoch, event), event))

    @rule(task_id=task_ids, what=st.sampled_from(["retry", "dead", "cancel", "queue"]))
    def manage(self, task_id: str, what: str) -> None:
        at = self.now()
        if what == "retry":
            self.append(
                TaskRetryScheduled(at=at, task_id=task_id, next_attempt=2, delay=1, not_before=at)
            )
        elif what == "dead":
            self.append(TaskDeadLettered(at=at, task_id=task_id, attempts=1))
        elif what == "cancel":
            self.append(TaskCancelled(at=at, task_id=task_id))
        else:
            self.append(TaskQueued(at=at, task_id=task_id, reason="retry_due"))

    @rule(task_id=task_ids, how=st.sampled_from(["retry", "continue", "bare"]))
    def reopen(self, task_id: str, how: str) -> None:
        """Reopen a finished task as `forge task retry` / `continue` do (with its state from
        the per-task index), or without it (refused by the index, an anomaly)."""
        found = TaskIndex(self.store).task(task_id) if task_id in self.live.finished else None
        restore = msgspec.to_builtins(found) if found is not None and how != "bare" else None
        event: Event
        if how == "continue":
            event = TaskContinued(at=self.now(), task_id=task_id, prompt="more", restore=restore)
        else:
            event = TaskQueued(
                at=self.now(), task_id=task_id, reason="manual_retry", restore=restore
            )
        self.append(event)

    @rule()
    def new_epoch(self) -> None:
        self.epoch += 1

    @rule()
    def snapshot(self) -> None:
        if self.live.event_count:
            self.snapshots.save(self.live)

    @invariant()
    def replay_matches_live(self) -> None:
        full, report = replay(self.store, use_snapshot=False)
        assert full.same_as(self.live)
        assert not report.quarantined
        again, _ = replay(self.store, use_snapshot=False)
        assert again.same_as(full)
        from_snapshot, _ = replay(self.store, snapshots=self.snapshots)
        assert from_snapshot.same_as(full)
        index = {k: (v.state, v.attempt, v.epoch) for k, v in self.store.index_entries().items()}
        hot = {k: (t.state, t.attempt, t.epoch) for k, t in full.tasks.items()}
        finished = {k: tuple(IndexEntry.parse(v)) for k, v in full.finished.items()}
        assert not hot.keys() & finished.keys()
        assert index == hot | finished
        for task_id, (state, attempt, epoch) in finished.items():  # the per-task index agrees
            task = TaskIndex(self.store).task(task_id)
            assert task is not None
            assert (task.state, task.attempt, task.epoch) == (state, attempt, epoch)


def test_live_state_equals_replay(embedded_server: EmbeddedServer) -> None:
    global _client
    _client = embedded_server.client()
    try:
        run_state_machine_as_test(
            LogMachine,
            settings=settings(
                max_examples=40,
                stateful_step_count=25,
                deadline=None,
                suppress_health_check=[HealthCheck.too_slow],
            ),
        )
    finally:
        _client.flushall()
        _client.close()
        _client = None
