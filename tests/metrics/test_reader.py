"""The metrics reader on a log written by hand: its counters are counts of events, and its
gauges equal a replay of the same log, finished (evicted) tasks included."""

from __future__ import annotations

import redis

from events import types as t
from events.replay import replay
from events.store import EventStore
from forge.metrics import LogMetrics


def run(task_id: str, model: str | None, usage: list[float], end: t.Event) -> list[t.Event]:
    spec = t.TaskDefinition(prompt="hi", runtime="claude", model=model)
    events: list[t.Event] = [
        t.TaskSubmitted(at=100.0, task_id=task_id, spec=spec),
        t.TaskAssigned(at=102.0, task_id=task_id, attempt=1, agent_id="a", epoch=1),
        t.TaskStarted(at=103.0, task_id=task_id, attempt=1, agent_id="a"),
    ]
    events += [
        t.TaskUsage(at=104.0, task_id=task_id, attempt=1, input_tokens=10 * (i + 1),
                    output_tokens=i + 1, cost_usd=cost)
        for i, cost in enumerate(usage)
    ]  # fmt: skip
    return [*events, end]


def test_counters_and_spend_agree_with_a_replay(redis_client: redis.Redis) -> None:
    store = EventStore(redis_client, "reader")
    done = t.TaskCompleted(at=113.0, task_id="t1", attempt=1, agent_id="a")
    crashed = t.TaskFailed(at=163.0, task_id="t2", attempt=1, failure="crash", transient=True)
    store.append_batch(
        run("t1", "opus", [0.5, 0.75], done)
        + run("t2", None, [0.25], crashed)
        + [t.TaskDeadLettered(at=164.0, task_id="t2", attempts=1)]
    )
    metrics = LogMetrics(store, "reader")
    found = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in metrics.collect()
        for s in family.samples
    }
    state, _ = replay(store, use_snapshot=False)
    assert found[("forge_spend_usd", (("model", "opus"),))] == 0.75  # running totals: the last
    assert found[("forge_spend_usd", (("model", "default"),))] == 0.25
    assert found[("forge_spend_total_usd", ())] == state.total_cost_usd == 1.0
    assert found[("forge_tokens", (("direction", "input"), ("model", "opus")))] == 20
    assert found[("forge_tokens", (("direction", "output"), ("model", "default")))] == 1
    assert {k[1][0][1]: v for k, v in found.items() if k[0] == "forge_tasks"} == state.counts()
    claude = (("runtime", "claude"),)
    assert found[("forge_task_attempts_started_total", claude)] == 2
    assert found[("forge_task_attempts_completed_total", claude)] == 1
    assert found[("forge_task_attempts_failed_total", claude)] == 1
    assert found[("forge_tasks_dead_lettered_total", claude)] == 1
    assert found[("forge_task_queue_wait_seconds_sum", claude)] == 4.0  # 2 s each
    ran = (("outcome", "completed"), ("runtime", "claude"))
    assert found[("forge_task_attempt_duration_seconds_sum", ran)] == 10.0
    le15 = (("le", "15.0"), ("outcome", "completed"), ("runtime", "claude"))
    assert found[("forge_task_attempt_duration_seconds_bucket", le15)] == 1
    failed = (("le", "60.0"), ("outcome", "failed"), ("runtime", "claude"))
    assert found[("forge_task_attempt_duration_seconds_bucket", failed)] == 1
    assert found[("forge_log_events", ())] == state.event_count == 12
    assert metrics.catch_up() == 0  # nothing new: nothing counted twice


def test_approvals_waiting_and_breakers(redis_client: redis.Redis) -> None:
    store = EventStore(redis_client, "reader2")
    asked = t.ApprovalRequested(
        at=105.0, approval_id="ap-1", task_id="t3", attempt=1, tool="Bash", expires_at=900.0
    )
    store.append_batch(
        [
            *run("t3", None, [], asked),
            t.BreakerOpened(at=106.0, name="model-api", until=200.0, reason="rate limited"),
        ]
    )
    metrics = LogMetrics(store, "reader2")

    def scrape() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in metrics.collect()
            for s in family.samples
        }

    found = scrape()
    assert found[("forge_approvals_waiting", ())] == 1
    assert found[("forge_breaker_state", (("breaker", "model-api"), ("state", "open")))] == 1
    assert found[("forge_breaker_state", (("breaker", "model-api"), ("state", "closed")))] == 0
    store.append_batch(
        [
            t.ApprovalAnswered(at=107.0, approval_id="ap-1", task_id="t3", allowed=True),
            t.BreakerClosed(at=108.0, name="model-api"),
        ]
    )
    found = scrape()
    assert found[("forge_approvals_waiting", ())] == 0
    assert found[("forge_breaker_state", (("breaker", "model-api"), ("state", "closed")))] == 1
