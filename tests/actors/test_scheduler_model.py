"""A Hypothesis stateful test of the scheduler against a reference model.

Random sequences of submissions (priorities, dependencies, scripted outcomes per attempt,
attempt limits), cancellations and failures of a breaker-protected dependency run through a
real orchestrator on the real server. After every step, once the fleet has settled:

* the state replayed from the log (in full, and from a snapshot) equals the live state;
* every task ended as the reference model says it must, given how its dependencies ended;
* no more agents were ever alive than the limit allows.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import redis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, precondition, rule, run_state_machine_as_test

from actors.breaker import BreakerPolicy
from actors.fleet import Fleet
from events import types as t
from events.state import FleetState, TaskState
from events.store import EventStore
from tests.actors.fakes import FakeRuntime
from tests.actors.helpers import assert_replay_matches, config, settled, wait_for
from tests.conftest import short_tempdir

MAX_AGENTS = 3


def expected_end(script: list[str], max_attempts: int) -> tuple[str, int]:
    """The reference model: how a task with this script ends, and after how many attempts."""
    charged = 0
    for attempts, fate in enumerate([*script, "ok"], start=1):
        if fate == "ok":
            return "completed", attempts
        if fate == "exit":
            return "failed", attempts
        if fate == "crash":
            charged += 1
            if charged >= max_attempts:
                return "dead_lettered", attempts
        # "api": a failure of the dependency, not of the task: no attempt is used up
    raise AssertionError("unreachable")


def check_task(state: FleetState, task: TaskState, cancelled: bool) -> None:
    spec = task.definition
    deps = [state.tasks[d] for d in spec.after]
    allowed: set[tuple[str, int | None]] = set()
    if cancelled:
        allowed |= {("cancelled", None)}
    if any(d.state != "completed" for d in deps):
        allowed |= {("failed", None)}
        assert task.state != "failed" or task.last_failure == "dependency" or cancelled
    else:
        end, attempts = expected_end(list(spec.command or []), spec.max_attempts)
        allowed |= {(end, attempts)}
    got = (task.state, task.attempt)
    assert got in allowed or (task.state, None) in allowed, (task.task_id, got, allowed)


def test_scheduler_matches_the_model(redis_client: redis.Redis) -> None:
    logs = short_tempdir("fgm")

    class SchedulerMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.store = EventStore(redis_client, f"model-{uuid.uuid4().hex[:8]}")
            cfg = config(
                Path(logs),
                max_agents=MAX_AGENTS,
                idle_timeout=0.05,
                breakers={"fake": "fake-api"},
                breaker=BreakerPolicy(failure_threshold=2, success_threshold=1, open_timeout=0.05),
            )
            self.fleet = Fleet(self.store, {"fake": FakeRuntime()}, cfg, seed=1).start()
            self.ids: list[str] = []
            self.cancelled: set[str] = set()
            self.max_alive = 0

        @rule(
            script=st.lists(st.sampled_from(["ok", "exit", "crash", "api"]), max_size=3),
            priority=st.integers(1, 5),
            max_attempts=st.integers(1, 3),
            deps=st.lists(st.integers(0, 50), max_size=2, unique=True),
        )
        def submit(
            self, script: list[str], priority: int, max_attempts: int, deps: list[int]
        ) -> None:
            task_id = f"t{len(self.ids)}"
            after = sorted({self.ids[d % len(self.ids)] for d in deps}) if self.ids else []
            spec = t.TaskDefinition(
                runtime="fake",
                command=script,
                priority=priority,
                max_attempts=max_attempts,
                after=after,
            )
            self.store.append(t.TaskSubmitted(at=time.time(), task_id=task_id, spec=spec))
            self.ids.append(task_id)

        @precondition(lambda self: bool(self.ids))
        @rule(pick=st.integers(0, 50))
        def cancel(self, pick: int) -> None:
            task_id = self.ids[pick % len(self.ids)]
            self.cancelled.add(task_id)
            self.store.append(t.TaskCancelRequested(at=time.time(), task_id=task_id))

        @rule()
        def settle_and_check(self) -> None:
            state = wait_for(self.fleet, lambda s: all(settled(s, i) for i in self.ids), timeout=30)
            alive = [a for a in state.agents.values() if a.status != "terminated"]
            assert len(alive) <= MAX_AGENTS
            for task_id in self.ids:
                check_task(state, state.tasks[task_id], task_id in self.cancelled)
            assert_replay_matches(self.store, state)

        def teardown(self) -> None:
            self.fleet.stop(grace=0.0, timeout=20)
            self.fleet.close()

    run_state_machine_as_test(
        SchedulerMachine,
        settings=settings(
            max_examples=12,
            stateful_step_count=8,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
