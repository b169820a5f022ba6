"""Spend and what it gates: the fleet budget (current setting, spending runtimes only), the
task budget across attempts, kept usage, retry on a failing exit code, and a half-open
breaker's trial slot."""

from __future__ import annotations

from pathlib import Path

import redis

from actors.breaker import BreakerPolicy
from actors.runtime import Outcome
from events import types as t
from events.state import FleetState
from forge.runtimes.shell import ShellRuntime
from tests.actors.fakes import FATES, FakeRuntime
from tests.actors.helpers import (
    all_terminal,
    assert_replay_matches,
    config,
    events_of,
    running_fleet,
    submit,
    wait_for,
)

FATES["dollar"] = Outcome(ok=True, exit_code=0, cost_usd=1.0)
FATES["spent_crash"] = Outcome(ok=False, failure="crash", reason="killed", cost_usd=0.6)


def test_a_shell_task_runs_while_the_fleet_budget_is_exhausted(
    redis_client: redis.Redis, tmp_path: Path
) -> None:
    fake = FakeRuntime()
    runtimes = {"fake": fake, "shell": ShellRuntime(kill_grace=0.5)}
    cfg = config(tmp_path, fleet_budget_usd=0.5)
    with running_fleet(redis_client, runtimes, cfg) as (fleet, store):
        submit(store, "paid", runtime="fake", command=["dollar"])
        wait_for(fleet, lambda s: s.budget_exhausted and all_terminal("paid")(s))
        submit(store, "more", runtime="fake")
        submit(store, "free", runtime="shell", command=["true"])
        state = wait_for(fleet, all_terminal("free"))
        assert state.tasks["free"].state == "completed"
        assert state.tasks["more"].state == "queued"  # the spending runtime waits
        assert [tid for tid, _ in fake.started] == ["paid"]
        (exhausted,) = events_of(store, t.BudgetExhausted)
        assert (exhausted.spent_usd, exhausted.limit_usd) == (1.0, 0.5)
        assert_replay_matches(store, state)


def test_the_fleet_budget_follows_the_setting_across_restarts(
    redis_client: redis.Redis, tmp_path: Path
) -> None:
    fake = FakeRuntime()
    with running_fleet(redis_client, {"fake": fake}, config(tmp_path, fleet_budget_usd=0.5)) as (
        fleet,
        store,
    ):
        submit(store, "one", runtime="fake", command=["dollar"])
        wait_for(fleet, lambda s: s.budget_exhausted and all_terminal("one")(s))
        submit(store, "two", runtime="fake", command=["dollar"])
        state = wait_for(fleet, lambda s: "two" in s.tasks)
        assert state.tasks["two"].state == "queued"
    # raised in the settings, daemon restarted: the fleet reopens and `two` runs
    with running_fleet(redis_client, {"fake": fake}, config(tmp_path, fleet_budget_usd=5.0)) as (
        fleet,
        store,
    ):
        state = wait_for(fleet, all_terminal("two"))
        assert state.tasks["two"].state == "completed"
        assert (state.budget_limit_usd, state.budget_exhausted) == (5.0, False)
    # lowered below what was spent: closed at once, before anything asks for an attempt
    with running_fleet(redis_client, {"fake": fake}, config(tmp_path, fleet_budget_usd=1.5)) as (
        fleet,
        store,
    ):
        state = wait_for(fleet, lambda s: s.budget_limit_usd == 1.5)
        assert state.budget_exhausted
        submit(store, "three", runtime="fake")
        state = wait_for(fleet, lambda s: "three" in s.tasks)
        assert state.tasks["three"].state == "queued"
    limits = [e.limit_usd for e in events_of(store, t.BudgetLimitSet)]
    assert limits == [0.5, 5.0, 1.5]
    assert_replay_matches(store, state)


def test_the_task_budget_bounds_every_attempt_together(
    redis_client: redis.Redis, tmp_path: Path
) -> None:
    fake = FakeRuntime()
    budgets: list[float | None] = []
    execute = fake.execute

    def recording(spec, sink):  # type: ignore[no-untyped-def]
        budgets.append(spec.budget_usd)
        return execute(spec, sink)

    fake.execute = recording  # type: ignore[method-assign]
    with running_fleet(redis_client, {"fake": fake}, config(tmp_path)) as (fleet, store):
        fates = ["spent_crash", "spent_crash", "ok"]
        submit(store, "capped", runtime="fake", command=fates, budget_usd=1.0, max_attempts=5)
        state = wait_for(fleet, all_terminal("capped"))
        task = state.tasks["capped"]
        assert (task.state, task.last_failure) == ("failed", "max_budget")
        assert budgets == [1.0, 0.4]  # the second attempt may spend only what is left
        assert task.attempt == 2
        assert [r.failure for r in task.history] == ["crash", "crash"]
        assert task.cost_usd == 1.2
        assert_replay_matches(store, state)


def test_retry_on_exit_is_a_task_option(redis_client: redis.Redis, tmp_path: Path) -> None:
    fake = FakeRuntime()
    with running_fleet(redis_client, {"fake": fake}, config(tmp_path)) as (fleet, store):
        submit(store, "retried", runtime="fake", command=["exit", "ok"], retry_on_exit=True)
        submit(store, "final", runtime="fake", command=["exit", "ok"])
        state = wait_for(fleet, all_terminal("retried", "final"))
        assert (state.tasks["retried"].state, state.tasks["retried"].attempt) == ("completed", 2)
        assert (state.tasks["final"].state, state.tasks["final"].attempt) == ("failed", 1)
        assert_replay_matches(store, state)


def _assigned_after_a_failed_trial(store: object) -> tuple[int, list[str]]:
    """(half-open periods, tasks assigned in one after its trial had failed and before the
    breaker's verdict)."""
    periods, early = 0, []
    half_open = failed = False
    for entry in store.read_range():  # type: ignore[attr-defined]
        match entry.event:
            case t.BreakerHalfOpened():
                periods += 1
                half_open, failed = True, False
            case t.BreakerOpened() | t.BreakerClosed():
                half_open = False
            case t.TaskFailed(failure="api_error") if half_open:
                failed = True
            case t.TaskAssigned(task_id=task_id) if half_open and failed:
                early.append(task_id)
            case _:
                pass
    return periods, early


def test_a_failed_trial_keeps_its_slot_until_the_breaker_reopens(
    redis_client: redis.Redis, tmp_path: Path
) -> None:
    fake = FakeRuntime()
    cfg = config(
        tmp_path,
        max_agents=3,
        breakers={"fake": "fake-api"},
        breaker=BreakerPolicy(failure_threshold=1, success_threshold=1, open_timeout=0.2),
    )
    with running_fleet(redis_client, {"fake": fake}, cfg) as (fleet, store):
        ids = ["a", "b", "c"]
        for task_id in ids:
            submit(store, task_id, runtime="fake", command=["api", "api", "api", "ok"])
        state: FleetState = wait_for(fleet, all_terminal(*ids), timeout=30)
        assert all(state.tasks[i].state == "completed" for i in ids)
        periods, early = _assigned_after_a_failed_trial(store)
        assert periods >= 3
        assert early == []
        assert_replay_matches(store, state)
