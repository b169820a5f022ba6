"""The orchestrator's decisions, with an in-process runtime whose outcomes each test scripts."""

from __future__ import annotations

import time
from pathlib import Path

import redis

from actors.breaker import BreakerPolicy
from actors.messages import AttemptEnded
from actors.runtime import Outcome
from events import types as t
from tests.actors.fakes import FATES, FakeRuntime
from tests.actors.helpers import (
    all_terminal,
    assert_replay_matches,
    config,
    events_of,
    running_fleet,
    submit,
    task_state,
    wait_for,
)

FATES["costly"] = Outcome(ok=True, exit_code=0, cost_usd=1.0)


def test_priority_then_fifo(redis_client: redis.Redis, tmp_path: Path) -> None:
    fake = FakeRuntime()
    with running_fleet(redis_client, {"fake": fake}, config(tmp_path, max_agents=1)) as (
        fleet,
        store,
    ):
        submit(store, "gate", runtime="fake", command=["hold"])
        fake.wait_started(1)
        for task_id, priority in [("a", 3), ("b", 1), ("c", 5), ("d", 1), ("e", 3)]:
            submit(store, task_id, runtime="fake", priority=priority)
        wait_for(fleet, lambda s: s.queue_length() == 5)
        fake.release("gate", 1)
        state = wait_for(fleet, all_terminal("gate", "a", "b", "c", "d", "e"))
        assert [tid for tid, _ in fake.started] == ["gate", "b", "d", "a", "e", "c"]
        assert_replay_matches(store, state)


def test_concurrency_limit_and_pool_growth(redis_client: redis.Redis, tmp_path: Path) -> None:
    fake = FakeRuntime()
    with running_fleet(redis_client, {"fake": fake}, config(tmp_path, max_agents=2)) as (
        fleet,
        store,
    ):
        for i in range(5):
            submit(store, f"t{i}", runtime="fake", command=["hold"])
        fake.wait_started(2)
        state = wait_for(fleet, lambda s: s.queue_length() == 3)
        assert len([a for a in state.agents.values() if a.status != "terminated"]) == 2
        assert len(fake.started) == 2
        for task_id, attempt in list(fake.started):
            fake.release(task_id, attempt)
        fake.wait_started(4)
        for task_id, attempt in fake.started[2:4]:
            fake.release(task_id, attempt)
        fake.wait_started(5)
        fake.release(*fake.started[4])
        state = wait_for(fleet, all_terminal(*[f"t{i}" for i in range(5)]))
        assert len(state.agents) == 2  # agents were reused, never more than the limit
        assert_replay_matches(store, state)


def test_dependencies_wait_and_failures_propagate(
    redis_client: redis.Redis, tmp_path: Path
) -> None:
    fake = FakeRuntime()
    with running_fleet(redis_client, {"fake": fake}, config(tmp_path, max_agents=3)) as (
        fleet,
        store,
    ):
        submit(store, "a", runtime="fake")
        submit(store, "b", runtime="fake", command=["hold"])
        submit(store, "c", runtime="fake", after=["a", "b"])
        submit(store, "bad", runtime="fake", command=["exit"])
        submit(store, "child", runtime="fake", after=["bad"])
        submit(store, "grandchild", runtime="fake", after=["child"])
        state = wait_for(fleet, all_terminal("a", "bad", "child", "grandchild"))
        assert state.tasks["c"].state == "pending"
        assert state.tasks["child"].state == "failed"
        assert state.tasks["child"].last_failure == "dependency"
        assert state.tasks["grandchild"].last_failure == "dependency"
        fake.release("b", 1)
        state = wait_for(fleet, all_terminal("c"))
        assert state.tasks["c"].state == "completed"
        started = [tid for tid, _ in fake.started]
        assert started.index("c") > started.index("b")
        assert_replay_matches(store, state)


def test_tags_choose_the_agent(redis_client: redis.Redis, tmp_path: Path) -> None:
    fake = FakeRuntime()
    with running_fleet(redis_client, {"fake": fake}, config(tmp_path, max_agents=2)) as (
        fleet,
        store,
    ):
        submit(store, "plain", runtime="fake")
        wait_for(fleet, all_terminal("plain"))
        submit(store, "gpu", runtime="fake", tags=["gpu"])
        state = wait_for(fleet, all_terminal("gpu"))
        gpu_agent = state.agents[state.tasks["gpu"].agent_id or ""]
        assert "gpu" in gpu_agent.tags
        assert state.tasks["plain"].agent_id != gpu_agent.agent_id
        assert_replay_matches(store, state)


def test_transient_failures_retry_then_dead_letter(
    redis_client: redis.Redis, tmp_path: Path
) -> None:
    fake = FakeRuntime()
    with running_fleet(redis_client, {"fake": fake}, config(tmp_path)) as (fleet, store):
        submit(store, "flaky", runtime="fake", command=["crash", "crash", "ok"], max_attempts=3)
        submit(store, "doomed", runtime="fake", command=["crash"] * 5, max_attempts=2)
        submit(store, "invalid", runtime="fake", command=["exit", "ok"], max_attempts=3)
        state = wait_for(fleet, all_terminal("flaky", "doomed", "invalid"))
        assert (state.tasks["flaky"].state, state.tasks["flaky"].attempt) == ("completed", 3)
        assert (state.tasks["doomed"].state, state.tasks["doomed"].attempt) == ("dead_lettered", 2)
        assert (state.tasks["invalid"].state, state.tasks["invalid"].attempt) == ("failed", 1)
        assert len(events_of(store, t.TaskRetryScheduled, "flaky")) == 2
        assert not events_of(store, t.TaskRetryScheduled, "invalid")
        assert_replay_matches(store, state)


def test_breaker_opens_keeps_tasks_queued_and_closes(
    redis_client: redis.Redis, tmp_path: Path
) -> None:
    fake = FakeRuntime()
    cfg = config(
        tmp_path,
        breakers={"fake": "fake-api"},
        breaker=BreakerPolicy(failure_threshold=2, success_threshold=1, open_timeout=0.3),
    )
    with running_fleet(redis_client, {"fake": fake}, cfg) as (fleet, store):
        submit(store, "x", runtime="fake", command=["api", "api", "ok"], max_attempts=1)
        state = wait_for(fleet, all_terminal("x"))
        assert state.tasks["x"].state == "completed"
        assert state.tasks["x"].attempt == 3  # two failures of the API used up no attempt
        opened = events_of(store, t.BreakerOpened)
        assert len(opened) == 1
        assert events_of(store, t.BreakerHalfOpened)
        state = wait_for(fleet, lambda s: s.breakers["fake-api"].state == "closed")
        assigned = events_of(store, t.TaskAssigned, "x")
        assert assigned[-1].at >= opened[0].until  # nothing ran while the breaker was open
        assert_replay_matches(store, state)


def test_reset_time_opens_the_breaker_until_then(redis_client: redis.Redis, tmp_path: Path) -> None:
    fake = FakeRuntime()
    cfg = config(tmp_path, breakers={"fake": "fake-api"})
    until = time.time() + 0.4
    FATES["limited"] = Outcome(
        ok=False, failure="rate_limited", reason="usage limit", reset_at=until
    )
    with running_fleet(redis_client, {"fake": fake}, cfg) as (fleet, store):
        submit(store, "y", runtime="fake", command=["limited", "ok"])
        state = wait_for(fleet, all_terminal("y"))
        opened = events_of(store, t.BreakerOpened)
        assert [round(e.until, 3) for e in opened] == [round(until, 3)]
        assert events_of(store, t.TaskAssigned, "y")[-1].at >= until
        assert state.tasks["y"].state == "completed"


def test_cancel_queued_and_running_tasks(redis_client: redis.Redis, tmp_path: Path) -> None:
    fake = FakeRuntime()
    with running_fleet(redis_client, {"fake": fake}, config(tmp_path, max_agents=1)) as (
        fleet,
        store,
    ):
        submit(store, "running", runtime="fake", command=["hold"])
        fake.wait_started(1)
        submit(store, "waiting", runtime="fake")
        submit(store, "dependant", runtime="fake", after=["running"])
        now = time.time()
        store.append_batch(
            [
                t.TaskCancelRequested(at=now, task_id="waiting"),
                t.TaskCancelRequested(at=now, task_id="running"),
            ]
        )
        state = wait_for(fleet, all_terminal("running", "waiting", "dependant"))
        assert state.tasks["running"].state == "cancelled"
        assert state.tasks["waiting"].state == "cancelled"
        assert state.tasks["dependant"].last_failure == "dependency"
        assert [tid for tid, _ in fake.started] == ["running"]
        assert_replay_matches(store, state)


def test_stale_completion_is_rejected(redis_client: redis.Redis, tmp_path: Path) -> None:
    fake = FakeRuntime()
    with running_fleet(redis_client, {"fake": fake}, config(tmp_path)) as (fleet, store):
        submit(store, "z", runtime="fake", command=["hold"])
        fake.wait_started(1)
        state = wait_for(fleet, lambda s: task_state(s, "z") == "running")
        agent_id = state.tasks["z"].agent_id or ""
        assert fleet.orchestrator is not None
        stale_epoch = (state.tasks["z"].epoch or 0) - 1
        fleet.orchestrator.tell(
            AttemptEnded(agent_id, "z", 1, stale_epoch, Outcome(ok=True, exit_code=0))
        )
        wait_for(fleet, lambda s: s.agents[agent_id].status == "idle")
        assert not events_of(store, t.TaskCompleted, "z")
        fake.release("z", 1)
        state = wait_for(fleet, all_terminal("z"))
        assert len(events_of(store, t.TaskCompleted, "z")) == 1
        assert_replay_matches(store, state)


def test_idle_agents_are_retired(redis_client: redis.Redis, tmp_path: Path) -> None:
    fake = FakeRuntime()
    with running_fleet(redis_client, {"fake": fake}, config(tmp_path, idle_timeout=0.2)) as (
        fleet,
        store,
    ):
        submit(store, "once", runtime="fake")
        state = wait_for(fleet, lambda s: any(a.status == "terminated" for a in s.agents.values()))
        (agent,) = state.agents.values()
        assert agent.reason == "idle"
        assert_replay_matches(store, state)


def test_fleet_budget_stops_new_attempts(redis_client: redis.Redis, tmp_path: Path) -> None:
    fake = FakeRuntime()
    cfg = config(tmp_path, max_agents=1, fleet_budget_usd=1.5)
    with running_fleet(redis_client, {"fake": fake}, cfg) as (fleet, store):
        for i in range(3):
            submit(store, f"c{i}", runtime="fake", command=["costly"])
        state = wait_for(fleet, lambda s: s.budget_exhausted)
        assert [s.state for s in state.tasks.values()].count("completed") == 2
        assert state.tasks["c2"].state == "queued"
        assert state.total_cost_usd == 2.0
        assert_replay_matches(store, state)


def test_unknown_runtime_fails_the_task(redis_client: redis.Redis, tmp_path: Path) -> None:
    with running_fleet(redis_client, {"fake": FakeRuntime()}, config(tmp_path)) as (fleet, store):
        submit(store, "odd", runtime="nope")
        state = wait_for(fleet, all_terminal("odd"))
        assert state.tasks["odd"].last_failure == "invalid"


def test_restart_recovers_a_lost_attempt_exactly_once(
    redis_client: redis.Redis, tmp_path: Path
) -> None:
    first = FakeRuntime()
    with running_fleet(redis_client, {"fake": first}, config(tmp_path)) as (fleet, store):
        submit(store, "r", runtime="fake", command=["hold"])
        first.wait_started(1)
        wait_for(fleet, lambda s: task_state(s, "r") == "running")
        fleet.close()  # no graceful stop: as if the daemon died
    second = FakeRuntime()
    with running_fleet(redis_client, {"fake": second}, config(tmp_path)) as (fleet, store):
        state = wait_for(fleet, all_terminal("r"))
        assert state.tasks["r"].state == "completed"
        assert state.tasks["r"].history[0].failure == "lost"
        assert len(events_of(store, t.TaskCompleted, "r")) == 1
        assert state.daemon_epoch == 2
        assert_replay_matches(store, state)
