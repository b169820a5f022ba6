"""The projection's state machine, queue order, costs and anomaly counting."""

from __future__ import annotations

from events import (
    AgentBusy,
    AgentIdle,
    AgentSpawned,
    BreakerClosed,
    BreakerOpened,
    FleetState,
    TaskAssigned,
    TaskCompleted,
    TaskDefinition,
    TaskFailed,
    TaskQueued,
    TaskRetryScheduled,
    TaskStarted,
    TaskSubmitted,
    TaskUsage,
    apply,
    apply_all,
    to_builtins,
)
from events.state import TaskState


def submit(task_id: str, priority: int = 3, after: list[str] | None = None) -> TaskSubmitted:
    spec = TaskDefinition(command=["true"], priority=priority, after=after or [])
    return TaskSubmitted(at=1.0, task_id=task_id, spec=spec)


def test_queue_is_by_priority_then_fifo() -> None:
    state = apply_all(
        FleetState(), [submit("a", 3), submit("b", 1), submit("c", 3), submit("d", 1)]
    )
    assert list(state.queued()) == ["b", "d", "a", "c"]
    assert state.next_queued(lambda t: t.definition.priority == 3) == "a"


def test_happy_path_and_costs() -> None:
    state = FleetState()
    task: TaskState | None = None
    for event in [
        submit("a"),
        TaskAssigned(at=2.0, task_id="a", attempt=1, agent_id="ag", epoch=7),
        TaskStarted(at=3.0, task_id="a", attempt=1, agent_id="ag", pid=42),
        TaskUsage(at=4.0, task_id="a", attempt=1, input_tokens=10, cost_usd=0.5),
        TaskUsage(at=5.0, task_id="a", attempt=1, input_tokens=30, cost_usd=1.5),
        TaskCompleted(at=6.0, task_id="a", attempt=1, agent_id="ag", exit_code=0, cost_usd=1.5),
    ]:
        apply(state, event)
        task = state.tasks.get("a") or task  # a finished task leaves the hot state
    assert "a" not in state.tasks
    assert state.finished == {"a": "completed|1|7"}
    assert state.counts() == {"completed": 1}
    assert task is not None
    assert task.state == "completed"
    assert task.cost_usd == 1.5
    assert state.total_cost_usd == 1.5
    assert task.input_tokens == 30
    assert task.history[0].outcome == "completed"
    assert task.finished_at == 6.0
    assert state.queue_length() == 0
    assert state.anomalies == 0


def test_retry_cycle_and_stale_attempt_is_an_anomaly() -> None:
    state = apply_all(
        FleetState(),
        [
            submit("a"),
            TaskAssigned(at=2.0, task_id="a", attempt=1, agent_id="ag", epoch=1),
            TaskFailed(at=3.0, task_id="a", attempt=1, failure="crash", transient=True),
            TaskRetryScheduled(at=3.0, task_id="a", next_attempt=2, delay=1.0, not_before=4.0),
            TaskQueued(at=4.0, task_id="a", reason="retry_due"),
            TaskAssigned(at=5.0, task_id="a", attempt=2, agent_id="ag", epoch=1),
            # a zombie of attempt 1 reports success: ignored
            TaskCompleted(at=6.0, task_id="a", attempt=1, agent_id="ag"),
        ],
    )
    task = state.tasks["a"]
    assert task.state == "assigned"
    assert task.attempt == 2
    assert [r.outcome for r in task.history] == ["failed", "assigned"]
    assert state.anomalies == 1
    assert state.anomaly_kinds == {"task.completed": 1}


def test_dependencies_keep_a_task_pending() -> None:
    state = apply_all(FleetState(), [submit("a"), submit("b", after=["a"])])
    assert state.tasks["b"].state == "pending"
    apply_all(
        state,
        [
            TaskAssigned(at=2.0, task_id="a", attempt=1, agent_id="ag", epoch=1),
            TaskCompleted(at=3.0, task_id="a", attempt=1, agent_id="ag"),
        ],
    )
    assert state.ready_dependants("a") == ["b"]
    apply(state, TaskQueued(at=4.0, task_id="b", reason="dependencies_met"))
    assert list(state.queued()) == ["b"]


def test_agents_and_breakers() -> None:
    state = apply_all(
        FleetState(),
        [
            AgentSpawned(at=1.0, agent_id="ag", runtime="claude", tags=["x"]),
            AgentBusy(at=2.0, agent_id="ag", task_id="a", attempt=1),
            BreakerOpened(at=3.0, name="api", until=60.0, reason="429", failures=3),
        ],
    )
    assert state.agents["ag"].status == "busy"
    assert state.breakers["api"].state == "open"
    apply_all(state, [AgentIdle(at=4.0, agent_id="ag"), BreakerClosed(at=5.0, name="api")])
    assert state.agents["ag"].task_id is None
    assert state.breakers["api"].state == "closed"
    assert state.breakers["api"].failures == 0


def test_copy_equality_and_builtins() -> None:
    spec = TaskDefinition(command=["x"], env={"API_KEY": "sk-ant-abcdefghijkl"})
    state = apply(FleetState(), TaskSubmitted(at=1.0, task_id="a", spec=spec))
    clone = state.copy()
    assert clone == state
    assert clone.same_as(state)
    assert clone is not state
    out = to_builtins(state)
    assert out["tasks"]["a"]["definition"]["env"]["API_KEY"] == "***"
    assert out["queues"]["3"] == {"a": None}
