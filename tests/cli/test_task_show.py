"""`forge task show`: what it says about a task's definition, its state and each attempt."""

from __future__ import annotations

import json
import time

import pytest
import redis

from events import types as t
from events.replay import replay
from events.task_index import TaskIndex
from tests.cli.helpers import invoke, store_of

pytestmark = pytest.mark.usefixtures("forge_env")


def _attempt(task_id: str, n: int, at: float) -> list[t.Event]:
    return [
        t.TaskAssigned(at=at, task_id=task_id, attempt=n, agent_id=f"agent-{n}", epoch=1),
        t.TaskStarted(at=at + 1, task_id=task_id, attempt=n, agent_id=f"agent-{n}"),
    ]


def _submitted(task_id: str, at: float, **spec: object) -> t.TaskSubmitted:
    return t.TaskSubmitted(at=at, task_id=task_id, spec=t.TaskDefinition(**spec))  # type: ignore[arg-type]


def _failed(task_id: str, n: int, at: float, failure: str, reason: str) -> t.TaskFailed:
    return t.TaskFailed(
        at=at, task_id=task_id, attempt=n, agent_id=f"agent-{n}", failure=failure, reason=reason
    )


def _show(task_id: str) -> list[str]:
    result = invoke(["task", "show", task_id])
    assert result.exit_code == 0, result.stderr
    return result.stdout.splitlines()


def test_a_named_prompt_task_shows_its_prompt_not_its_name(redis_client: redis.Redis) -> None:
    submitted = invoke(["task", "submit", "Fix the failing test\nin tests/", "--name", "fixer"])
    task_id = submitted.stdout.strip()
    lines = _show(task_id)
    assert lines[0] == f"task {task_id} (fixer)"
    assert "prompt: Fix the failing test in tests/" in lines
    assert "prompt: fixer" not in lines


def test_a_task_completed_on_a_retry_shows_no_earlier_failure(redis_client: redis.Redis) -> None:
    now = time.time()
    store_of(redis_client).append_batch(
        [
            _submitted("t-retried", now, command=["true"]),
            *_attempt("t-retried", 1, now),
            _failed("t-retried", 1, now + 2, "api_error", "API Error: 529 Overloaded"),
            t.TaskRetryScheduled(
                at=now + 2, task_id="t-retried", next_attempt=2, delay=0, not_before=now + 2
            ),
            t.TaskQueued(at=now + 3, task_id="t-retried", reason="retry_due"),
            *_attempt("t-retried", 2, now + 3),
            t.TaskCompleted(at=now + 5, task_id="t-retried", attempt=2, agent_id="agent-2"),
        ]
    )
    lines = _show("t-retried")
    assert "state: completed" in lines
    attempts = [line.split("\t") for line in lines if line.startswith(("1\t", "2\t"))]
    assert [(row[1], row[-2]) for row in attempts] == [("failed", "api_error"), ("completed", "")]
    assert attempts[0][-1] == "API Error: 529 Overloaded"  # the earlier failure: in the history


def test_a_failed_or_waiting_task_shows_its_last_attempts_failure(
    redis_client: redis.Redis,
) -> None:
    now = time.time()
    store_of(redis_client).append_batch(
        [
            _submitted("t-failing", now, command=["false"], max_attempts=3),
            *_attempt("t-failing", 1, now),
            _failed("t-failing", 1, now + 2, "crash", "killed by SIGKILL"),
            t.TaskRetryScheduled(
                at=now + 2, task_id="t-failing", next_attempt=2, delay=60, not_before=now + 62
            ),
        ]
    )
    assert "state: retry_wait (crash: killed by SIGKILL)" in _show("t-failing")
    store_of(redis_client).append_batch(
        [
            t.TaskQueued(at=now + 62, task_id="t-failing", reason="retry_due"),
            *_attempt("t-failing", 2, now + 62),
        ]
    )
    assert "state: running" in _show("t-failing")  # attempt 2 runs: attempt 1 is history
    store_of(redis_client).append(_failed("t-failing", 2, now + 70, "exit", "exited with code 1"))
    assert "state: failed (exit: exited with code 1)" in _show("t-failing")


def test_a_cancelled_attempt_reads_cancelled(redis_client: redis.Redis) -> None:
    now = time.time()
    store_of(redis_client).append_batch(
        [
            _submitted("t-cancelled", now, command=["sleep", "60"]),
            *_attempt("t-cancelled", 1, now),
            t.TaskCancelled(at=now + 4, task_id="t-cancelled", reason="cancelled on request"),
        ]
    )
    lines = _show("t-cancelled")
    assert "state: cancelled (cancelled on request)" in lines
    (row,) = [line.split("\t") for line in lines if line.startswith("1\t")]
    assert row[1] == "cancelled"
    assert row[4] == "3.0s"  # from its start to the cancel
    shown = json.loads(invoke(["task", "show", "t-cancelled", "--json"]).stdout)
    assert shown["history"][0]["outcome"] == "cancelled"
    state, _ = replay(store_of(redis_client))  # the projection itself, not only the rendering
    assert state.finished["t-cancelled"].startswith("cancelled|")
    task = TaskIndex(store_of(redis_client)).task("t-cancelled")
    assert task is not None
    assert task.history[0].finished_at == pytest.approx(now + 4)
