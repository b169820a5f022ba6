"""An agent's supervisor that meets an error never leaves its task wedged or kills the
orchestrator: a command that cannot be spawned fails its task; a supervisor that dies has its
attempt recorded as lost (and retried), and cancelling such a task still works."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import redis

from actors.runtime import Health, Notice, RunHandle, TaskSpec
from actors.supervisor import HealthPolicy
from events import types as t
from forge.runtimes import ShellRuntime
from tests.actors.fakes import FakeRun, FakeRuntime
from tests.actors.helpers import (
    all_terminal,
    assert_replay_matches,
    config,
    events_of,
    running_fleet,
    submit,
    wait_for,
)


def test_a_command_that_cannot_be_spawned_fails_its_task(
    redis_client: redis.Redis, tmp_path: Path
) -> None:
    runtimes = {"shell": ShellRuntime(kill_grace=0.5)}
    with running_fleet(redis_client, runtimes, config(tmp_path, max_agents=1)) as (fleet, store):
        # written straight to the log, as an older Forge or another writer could have
        submit(store, "nul", command=["echo", "a\x00b"])
        submit(store, "next", command=["echo", "fine"])
        state = wait_for(fleet, all_terminal("nul", "next"))
        assert (state.tasks["nul"].state, state.tasks["nul"].last_failure) == ("failed", "invalid")
        assert "null" in (state.tasks["nul"].last_reason or "")
        assert state.tasks["next"].state == "completed"  # the same single agent ran it
        assert_replay_matches(store, state)


def test_a_runtime_that_raises_on_start_fails_the_task_not_the_agent(
    redis_client: redis.Redis, tmp_path: Path
) -> None:
    runtime = _SickRuntime()
    with running_fleet(redis_client, {"fake": runtime}, config(tmp_path, max_agents=1)) as (
        fleet,
        store,
    ):
        submit(store, "raise", runtime="fake", command=["ok"])
        submit(store, "next", runtime="fake", command=["ok"])
        state = wait_for(fleet, all_terminal("raise", "next"))
        assert (state.tasks["raise"].state, state.tasks["raise"].last_failure) == (
            "failed",
            "spawn",
        )
        assert state.tasks["raise"].last_reason == "cannot start the attempt: no such thing"
        assert state.tasks["next"].state == "completed"
        assert len({e.agent_id for e in events_of(store, t.AgentSpawned)}) == 1
        assert_replay_matches(store, state)


class _SickRun(FakeRun):
    """A run whose health probe raises, as a broken /proc or psutil could."""

    def health(self) -> Health:
        raise RuntimeError("probe exploded")


class _SickRuntime(FakeRuntime):
    """First attempts of `sick` tasks have a health probe that raises; all else is FakeRuntime."""

    def __init__(self) -> None:
        super().__init__()
        self.sick: list[_SickRun] = []

    def execute(self, spec: TaskSpec, sink: Callable[[Notice], None]) -> RunHandle:
        if spec.task_id == "raise":
            raise FileNotFoundError("no such thing")
        if spec.task_id.startswith("sick") and spec.attempt == 1:
            run = _SickRun(None)
            self.sick.append(run)
            with self.changed:
                self.started.append((spec.task_id, spec.attempt))
                self.changed.notify_all()
            return run
        return super().execute(spec, sink)


def test_a_dead_supervisor_loses_its_attempt_and_the_task_is_retried(
    redis_client: redis.Redis, tmp_path: Path
) -> None:
    runtime = _SickRuntime()
    cfg = config(tmp_path, max_agents=2, health=HealthPolicy(interval=0.05))
    with running_fleet(redis_client, {"fake": runtime}, cfg) as (fleet, store):
        submit(store, "sick", runtime="fake", command=["ok"])
        state = wait_for(fleet, all_terminal("sick"))
        assert (state.tasks["sick"].state, state.tasks["sick"].attempt) == ("completed", 2)
        failed = events_of(store, t.TaskFailed, "sick")
        assert [(e.failure, e.reason) for e in failed] == [
            ("lost", "agent supervisor failed: RuntimeError: probe exploded")
        ]
        assert all(run.wait(0) is not None for run in runtime.sick)  # its attempt was stopped
        terminated = [e.reason for e in events_of(store, t.AgentTerminated)]
        assert "agent supervisor failed: RuntimeError: probe exploded" in terminated
        assert fleet.alive()
        assert_replay_matches(store, state)


def test_cancelling_a_task_whose_supervisor_died_keeps_the_orchestrator(
    redis_client: redis.Redis, tmp_path: Path
) -> None:
    runtime = FakeRuntime()
    with running_fleet(redis_client, {"fake": runtime}, config(tmp_path, max_agents=2)) as (
        fleet,
        store,
    ):
        submit(store, "held", runtime="fake", command=["hold"])
        runtime.wait_started(1)
        state = wait_for(fleet, lambda s: s.tasks["held"].state == "running")
        agent_id = state.tasks["held"].agent_id
        assert agent_id is not None
        fleet.supervisors[agent_id].stop()  # gone without a word to the orchestrator
        store.append(t.TaskCancelRequested(at=time.time(), task_id="held"))
        state = wait_for(fleet, all_terminal("held"))
        assert state.tasks["held"].state == "cancelled"
        assert state.agents[agent_id].status == "terminated"
        submit(store, "after", runtime="fake", command=["ok"])
        state = wait_for(fleet, all_terminal("after"))
        assert state.tasks["after"].state == "completed"
        assert fleet.alive()
        assert_replay_matches(store, state)
