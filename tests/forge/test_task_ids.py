"""A submitted task never takes an id the log knows already: with random ids a collision is
unlikely, and a task lost to one would be lost silently (forge.submit)."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import pytest
import redis

import forge.submit as submitting
from events import types as t
from events.store import EventStore
from forge.settings import load_settings
from forge.submit import TaskRequest, new_task_id, plan, submit


def test_an_id_is_task_and_64_random_bits() -> None:
    ids = {new_task_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(re.fullmatch(r"task-[0-9a-f]{16}", i) for i in ids)


def _drawn(*ids: str) -> Iterator[str]:
    yield from ids
    raise AssertionError("drew more ids than expected")


def test_a_batch_that_would_reuse_an_id_the_log_knows_is_appended_under_new_ids(
    redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = EventStore(redis_client, "task-ids")
    spec = t.TaskDefinition(command=["true"])
    store.append(t.TaskSubmitted(at=time.time(), task_id="task-taken", spec=spec))
    # the plan draws a taken id; the batch is refused whole and drawn again (no two alike)
    draws = _drawn("task-taken", "task-a", "task-b", "task-b", "task-c")
    monkeypatch.setattr(submitting, "new_task_id", lambda: next(draws))
    settings = load_settings(None, {})
    requests = [TaskRequest(command=["true"], name="x"), TaskRequest(command=["true"], after=["x"])]
    ids = submit(store, plan(store, requests, settings))
    assert ids == ["task-b", "task-c"]
    assert {i: e.state for i, e in store.index_entries().items()} == {
        "task-taken": "queued",
        "task-b": "queued",
        "task-c": "pending",  # waits on task-b: its dependency followed the new id
    }
    submitted = [e.event for e in store.read_range() if isinstance(e.event, t.TaskSubmitted)]
    assert [e.task_id for e in submitted] == ["task-taken", "task-b", "task-c"]
    assert submitted[2].spec.after == ("task-b",)
