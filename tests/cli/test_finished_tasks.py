"""Finished tasks through the CLI: they leave the hot state, and `task list/show/history` read
them through the per-task index; `events verify` checks that index and repairs it."""

from __future__ import annotations

import json
import time

import pytest
import redis

from events import types as t
from events.replay import replay
from tests.cli.helpers import completed_task, invoke, one_error_line, store_of

pytestmark = pytest.mark.usefixtures("forge_env")


def _log(client: redis.Redis) -> None:
    """One completed, one cancelled (both finished), one failed and one queued task."""
    now = time.time()
    completed_task(client, "t-done")
    store_of(client).append_batch(
        [
            t.TaskSubmitted(at=now, task_id="t-cancel", spec=t.TaskDefinition(command=["x"])),
            t.TaskCancelled(at=now + 1, task_id="t-cancel", reason="cancelled on request"),
            t.TaskSubmitted(at=now + 2, task_id="t-fail", spec=t.TaskDefinition(command=["x"])),
            t.TaskAssigned(at=now + 2, task_id="t-fail", attempt=1, agent_id="a", epoch=1),
            t.TaskFailed(at=now + 3, task_id="t-fail", attempt=1, failure="exit", exit_code=2),
            t.TaskSubmitted(at=now + 4, task_id="t-wait", spec=t.TaskDefinition(command=["x"])),
        ]
    )


def test_finished_tasks_are_listed_shown_and_verified(redis_client: redis.Redis) -> None:
    _log(redis_client)
    state, _ = replay(store_of(redis_client))
    assert set(state.tasks) == {"t-fail", "t-wait"}  # the hot state: live work only
    assert set(state.finished) == {"t-done", "t-cancel"}

    listed = json.loads(invoke(["task", "list", "--json"]).stdout)
    assert {x["task_id"]: x["state"] for x in listed} == {
        "t-done": "completed",
        "t-cancel": "cancelled",
        "t-fail": "failed",
        "t-wait": "queued",
    }
    only = json.loads(invoke(["task", "list", "--state", "completed", "--json"]).stdout)
    assert [x["task_id"] for x in only] == ["t-done"]
    hot = json.loads(invoke(["task", "list", "--state", "queued", "--json"]).stdout)
    assert [x["task_id"] for x in hot] == ["t-wait"]

    shown = json.loads(invoke(["task", "show", "t-done", "--json"]).stdout)
    assert (shown["state"], shown["attempt"], shown["history"][0]["outcome"]) == (
        "completed",
        1,
        "completed",
    )
    history = invoke(["task", "history", "t-cancel"])
    assert history.exit_code == 0
    assert [line.split("\t")[1] for line in history.stdout.splitlines()[1:]] == [
        "task.submitted",
        "task.cancelled",
    ]
    missing = invoke(["task", "show", "t-nobody"])
    assert missing.exit_code == 1
    assert "unknown task id" in one_error_line(missing)

    verified = invoke(["events", "verify"])
    assert verified.exit_code == 0, verified.stdout
    assert "per-task index: 2 finished tasks" in verified.stdout

    keys = store_of(redis_client).keys
    redis_client.delete(keys.task_events("t-done"))  # lose part of the derived index
    redis_client.hdel(keys.finished_summaries, "t-cancel")
    broken = invoke(["events", "verify"])
    assert broken.exit_code == 1
    assert "FAIL  per-task index: 2 wrong (events of t-done, summary of t-cancel)" in broken.stdout
    repaired = invoke(["events", "verify", "--repair-task-index"])
    assert repaired.exit_code == 0, repaired.stdout
    assert "2 wrong, rebuilt from the log" in repaired.stdout
    assert invoke(["events", "verify"]).exit_code == 0
    assert json.loads(invoke(["task", "show", "t-done", "--json"]).stdout)["state"] == "completed"
