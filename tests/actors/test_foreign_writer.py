"""A task appended to the log by a writer that bypassed the append script (no index entry) is
run like any other, once: its index entry is derived from the log."""

from __future__ import annotations

import time
from pathlib import Path

import redis

from events import types as t
from events.codec import encode_entry
from tests.actors.fakes import FakeRuntime
from tests.actors.helpers import (
    all_terminal,
    assert_replay_matches,
    config,
    events_of,
    running_fleet,
    submit,
    wait_for,
)


def test_a_task_submitted_without_the_index_runs_once(
    redis_client: redis.Redis, tmp_path: Path
) -> None:
    runtime = FakeRuntime()
    with running_fleet(redis_client, {"fake": runtime}, config(tmp_path)) as (fleet, store):
        event = t.TaskSubmitted(
            at=time.time(),
            task_id="raw",
            spec=t.TaskDefinition(runtime="fake", command=["ok"]),
        )
        redis_client.xadd(store.keys.log, encode_entry(event))  # type: ignore[arg-type]
        assert store.task_index("raw") is None
        submit(store, "normal", runtime="fake", command=["ok"])
        state = wait_for(fleet, all_terminal("raw", "normal"))
        assert state.tasks["raw"].state == "completed"
        assert len(events_of(store, t.TaskAssigned, "raw")) == 1
        index = store.task_index("raw")
        assert index is not None
        assert index.state == "completed"
        assert_replay_matches(store, state)
