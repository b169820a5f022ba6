"""An attempt a restarted daemon adopts without a recorded start gets its `task.started`."""

from __future__ import annotations

import time
from pathlib import Path

import redis

from actors.policy import build_spec
from events import types as t
from events.projection import apply
from events.state import FleetState
from events.store import EventStore
from forge.runtimes import ShellRuntime
from tests.actors.helpers import all_terminal, config, running_fleet, wait_for


def test_an_adopted_attempt_whose_start_was_never_recorded_reads_claim_started_outcome(
    redis_client: redis.Redis, tmp_path: Path
) -> None:
    go = tmp_path / "go"
    cfg = config(tmp_path / "logs")
    store = EventStore(redis_client, "unstarted")
    now = time.time()
    definition = t.TaskDefinition(
        command=["sh", "-c", f"while [ ! -e {go} ]; do sleep 0.02; done; echo done"]
    )
    history = [  # the old daemon claimed the task, started its agent and died
        t.DaemonStarted(at=now, node_id="old", epoch=1, pid=1),
        t.TaskSubmitted(at=now, task_id="u", spec=definition),
        t.AgentSpawned(at=now, agent_id="agent-old", runtime="shell", node_id="old"),
        t.AgentReady(at=now, agent_id="agent-old"),
        t.TaskAssigned(at=now, task_id="u", attempt=1, agent_id="agent-old", epoch=1),
        t.AgentBusy(at=now, agent_id="agent-old", task_id="u", attempt=1),
    ]
    store.append_batch(history)
    state = FleetState()
    for event in history:
        apply(state, event)
    spec = build_spec(state.tasks["u"], 1, cfg)
    orphan = ShellRuntime().execute(spec, lambda notice: None)
    try:
        with running_fleet(redis_client, {"shell": ShellRuntime()}, cfg, "unstarted") as (
            fleet,
            store,
        ):
            wait_for(fleet, lambda s: s.tasks["u"].state == "running", timeout=30)
            go.touch()
            state = wait_for(fleet, all_terminal("u"), timeout=30)
            assert state.tasks["u"].state == "completed"
    finally:
        orphan.terminate(grace=0)
        orphan.wait(10)

    kinds = [
        type(e.event).__name__
        for e in store.read_range()
        if getattr(e.event, "task_id", None) == "u"
        and isinstance(e.event, t.TaskAssigned | t.TaskStarted | t.TaskCompleted)
    ]
    assert kinds == ["TaskAssigned", "TaskStarted", "TaskCompleted"]
    started = next(e.event for e in store.read_range() if isinstance(e.event, t.TaskStarted))
    assert started.pid == orphan.pid
    assert started.log_path == spec.log_path
