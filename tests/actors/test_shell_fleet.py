"""The actors with real processes through the shell runtime."""

from __future__ import annotations

import time
from pathlib import Path

import psutil
import redis

from actors.supervisor import HealthPolicy
from events import types as t
from forge.runtimes import ShellRuntime
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


def shell() -> dict[str, ShellRuntime]:
    return {"shell": ShellRuntime(kill_grace=0.5)}


def test_success_failure_crash_and_timeout(redis_client: redis.Redis, tmp_path: Path) -> None:
    cfg = config(tmp_path, max_agents=4)
    with running_fleet(redis_client, shell(), cfg) as (fleet, store):
        submit(store, "ok", command=["sh", "-c", "echo working; echo done"])
        submit(store, "exit", command=["sh", "-c", "exit 3"])
        submit(store, "crash", command=["sh", "-c", "kill -9 $$"], max_attempts=2)
        submit(store, "hang", command=["sleep", "30"], timeout=0.5, max_attempts=1)
        state = wait_for(fleet, all_terminal("ok", "exit", "crash", "hang"), timeout=30)
        tasks = state.tasks
        assert tasks["ok"].state == "completed"
        assert tasks["ok"].exit_code == 0
        assert (tasks["exit"].state, tasks["exit"].last_failure, tasks["exit"].exit_code) == (
            "failed",
            "exit",
            3,
        )
        assert (tasks["crash"].state, tasks["crash"].attempt) == ("dead_lettered", 2)
        assert tasks["crash"].last_failure == "crash"
        assert (tasks["hang"].state, tasks["hang"].last_failure) == ("dead_lettered", "timeout")
        log = Path(tasks["ok"].log_path or "")
        assert "working" in log.read_text()
        assert_replay_matches(store, state)


def test_cancel_while_running_stops_the_process(redis_client: redis.Redis, tmp_path: Path) -> None:
    with running_fleet(redis_client, shell(), config(tmp_path)) as (fleet, store):
        submit(store, "long", command=["sleep", "30"])
        state = wait_for(fleet, lambda s: task_state(s, "long") == "running")
        pid = state.tasks["long"].pid
        assert pid is not None
        store.append(t.TaskCancelRequested(at=time.time(), task_id="long"))
        state = wait_for(fleet, all_terminal("long"))
        assert state.tasks["long"].state == "cancelled"
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
        assert_replay_matches(store, state)


def test_stuck_agent_is_stopped_and_retried(redis_client: redis.Redis, tmp_path: Path) -> None:
    health = HealthPolicy(interval=0.1, stuck_after=0.4, kill_grace=0.2)
    with running_fleet(redis_client, shell(), config(tmp_path, health=health)) as (fleet, store):
        submit(store, "quiet", command=["sleep", "30"], max_attempts=2)
        state = wait_for(fleet, all_terminal("quiet"), timeout=30)
        assert state.tasks["quiet"].state == "dead_lettered"
        assert [r.failure for r in state.tasks["quiet"].history] == ["unhealthy", "unhealthy"]
        unhealthy = events_of(store, t.AgentUnhealthy)
        assert unhealthy
        assert "stuck" in unhealthy[0].reason
        assert_replay_matches(store, state)


def test_progress_events_come_from_output(redis_client: redis.Redis, tmp_path: Path) -> None:
    with running_fleet(redis_client, shell(), config(tmp_path)) as (fleet, store):
        submit(store, "talk", command=["sh", "-c", "echo step one; sleep 0.2; echo step two"])
        state = wait_for(fleet, all_terminal("talk"))
        assert state.tasks["talk"].state == "completed"
        assert events_of(store, t.TaskStarted, "talk")[0].pid is not None
        progress = [e.summary for e in events_of(store, t.TaskProgress, "talk")]
        assert progress == ["step one"]  # the second line came within the rate limit


def test_an_attempt_started_but_never_recorded_is_adopted_not_rerun(
    redis_client: redis.Redis, tmp_path: Path
) -> None:
    """The daemon died after starting the agent and before recording it: the next daemon
    finds the agent by its log file and adopts it, so the work is done exactly once."""
    from actors.policy import build_spec
    from events.projection import apply
    from events.state import FleetState
    from events.store import EventStore

    marker = tmp_path / "runs.txt"
    cfg = config(tmp_path / "logs")
    store = EventStore(redis_client, "orphan")
    now = time.time()
    definition = t.TaskDefinition(
        command=["sh", "-c", f"echo run >> {marker}; sleep 0.5; echo done"]
    )
    history = [
        t.DaemonStarted(at=now, node_id="old", epoch=1, pid=1),
        t.TaskSubmitted(at=now, task_id="o", spec=definition),
        t.AgentSpawned(at=now, agent_id="agent-old", runtime="shell", node_id="old"),
        t.AgentReady(at=now, agent_id="agent-old"),
        t.TaskAssigned(at=now, task_id="o", attempt=1, agent_id="agent-old", epoch=1),
        t.AgentBusy(at=now, agent_id="agent-old", task_id="o", attempt=1),
    ]
    store.append_batch(history)
    state = FleetState()
    for event in history:
        apply(state, event)
    spec = build_spec(state.tasks["o"], 1, cfg)
    orphan = ShellRuntime().execute(spec, lambda notice: None)  # the old daemon's agent
    with running_fleet(redis_client, shell(), cfg, namespace="orphan") as (fleet, store):
        state = wait_for(fleet, all_terminal("o"), timeout=30)
        assert state.tasks["o"].state == "completed"
        assert state.tasks["o"].attempt == 1
    orphan.wait(10)
    assert marker.read_text() == "run\n"  # ran once
    assert len(events_of(store, t.TaskCompleted, "o")) == 1
