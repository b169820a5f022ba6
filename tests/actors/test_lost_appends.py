"""A server that crashes before its last appends reach the disk makes the log forget that an
attempt was claimed and started. The attempt's shim still runs (or has ended and left its
status): the next claim of that attempt number adopts it instead of running the command again."""

from __future__ import annotations

import os
import time
from pathlib import Path

import redis

from actors.runtime import TaskSpec
from events import types as t
from events.store import EventStore
from forge.runtimes import ShellRuntime
from tests.actors.helpers import (
    all_terminal,
    assert_replay_matches,
    config,
    events_of,
    running_fleet,
    submit,
    wait_for,
)


def _spec(logs: Path, task_id: str, command: list[str]) -> TaskSpec:
    return TaskSpec(
        task_id=task_id,
        attempt=1,
        log_path=str(logs / task_id / "attempt-1.log"),
        command=command,
        timeout=60.0,
    )


def test_an_attempt_the_log_forgot_is_adopted_not_run_again(
    redis_client: redis.Redis, tmp_path: Path
) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    logs = tmp_path / "logs"
    slow = ["sh", "-c", f"echo run >> {marks}/slow; sleep 1; echo finished"]
    quick = ["sh", "-c", f"echo run >> {marks}/quick; echo finished"]
    # the tasks were submitted (that much the log kept) ...
    store = EventStore(redis_client, "test")  # running_fleet's namespace
    submit(store, "slow", command=slow)
    submit(store, "quick", command=quick)
    # ... and an earlier daemon started them before the log lost the records of it
    earlier = ShellRuntime(kill_grace=0.5)
    running = earlier.execute(_spec(logs, "slow", slow), lambda _n: None)
    ended = earlier.execute(_spec(logs, "quick", quick), lambda _n: None)
    assert ended.wait(10) is not None
    earlier.cleanup()  # that daemon is gone; its shims are not

    runtimes = {"shell": ShellRuntime(kill_grace=0.5)}
    with running_fleet(redis_client, runtimes, config(logs, max_agents=2)) as (fleet, store):
        state = wait_for(fleet, all_terminal("slow", "quick"))
        assert state.tasks["slow"].state == "completed"
        assert state.tasks["quick"].state == "completed"
        started = {e.task_id: e.pid for e in events_of(store, t.TaskStarted)}
        assert started["slow"] == running.pid  # followed, not started again
        assert_replay_matches(store, state)
    assert (marks / "slow").read_text() == "run\n"
    assert (marks / "quick").read_text() == "run\n"
    assert "finished" in (logs / "slow" / "attempt-1.log").read_text()


def test_an_older_attempt_of_the_same_task_id_is_not_taken_for_it(
    redis_client: redis.Redis, tmp_path: Path
) -> None:
    """Another namespace's task of the same id left its attempt files in the same logs
    directory, before this task was submitted: this task runs its own command."""
    marks = tmp_path / "marks"
    marks.mkdir()
    logs = tmp_path / "logs"
    other = ["sh", "-c", f"echo other >> {marks}/same"]
    mine = ["sh", "-c", f"echo mine >> {marks}/same"]
    earlier = ShellRuntime(kill_grace=0.5)
    assert earlier.execute(_spec(logs, "same", other), lambda _n: None).wait(10) is not None
    earlier.cleanup()
    an_hour_ago = time.time() - 3600
    for left in (logs / "same").iterdir():  # that run was an hour ago
        os.utime(left, (an_hour_ago, an_hour_ago))
    runtimes = {"shell": ShellRuntime(kill_grace=0.5)}
    with running_fleet(redis_client, runtimes, config(logs)) as (fleet, store):
        submit(store, "same", command=mine)
        state = wait_for(fleet, all_terminal("same"))
        assert state.tasks["same"].state == "completed"
    assert (marks / "same").read_text() == "other\nmine\n"
